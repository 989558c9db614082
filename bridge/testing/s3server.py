"""A real S3 server for tests and benchmarks: moto's standalone server (``moto[server]``
from PyPI, in the ``test`` extra) as a child process on a free loopback port.

    with S3Server(tmp_path) as s3:
        url = s3.storage_url("drive", "blobs")   # s3://drive/blobs?endpoint=http://...

It speaks the S3 REST API over HTTP (multipart uploads, ranged GETs, listings), so the
store under test is exercised through aiobotocore exactly as against AWS or MinIO.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .synapse import free_port

# moto accepts any keys; these are only for signing (and for "never logged" checks)
TEST_ACCESS_KEY = "AKIATESTANYWHERE0001"
TEST_SECRET_KEY = "anywhere-test-secret-5f3b9c0e7d1a4e2b8c6f"


def moto_installed() -> bool:
    return importlib.util.find_spec("moto") is not None and (
        importlib.util.find_spec("flask") is not None
    )


def require_moto() -> None:
    """Skip a test when moto[server] is missing; under ``CI=true`` fail it instead."""
    if not moto_installed():
        from .fixtures import skip_unless_ci

        skip_unless_ci("moto[server] is not installed (pip install -e '.[test]')")


class S3Server:
    """``python -m moto.server`` on 127.0.0.1, with its output in ``workdir/s3.log``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment giving a process the keys (as an operator would)."""
        return {"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY}

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "s3.log", "ab")  # noqa: SIM115 - the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(16 * 1024 * 1024)},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} in {timeout} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> S3Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self):
        """A synchronous boto3 client on this server (for set-up and checks in tests)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=TEST_SECRET_KEY,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def storage_url(self, bucket: str, prefix: str = "", **options: str) -> str:
        """``s3://bucket/prefix?endpoint=...`` for this server (the bucket made first)."""
        self.create_bucket(bucket)
        query = "&".join([f"endpoint={self.endpoint}"] + [f"{k}={v}" for k, v in options.items()])
        return f"s3://{bucket}/{prefix}?{query}"
