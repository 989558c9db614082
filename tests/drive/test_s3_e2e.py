"""The drive on S3 end to end: a real Synapse, the bridge as a process and a real S3
server (moto's, started by the tests). ``anywhere doctor`` probes the store, keys are
never logged, a SIGKILL during a large upload leaves nothing behind, and a second bridge
host on the same PostgreSQL and S3 serves every file."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from anywhere.bridge.testing.fixtures import postgres_database_blocking
from anywhere.bridge.testing.s3server import (
    TEST_ACCESS_KEY,
    TEST_SECRET_KEY,
    S3Server,
    require_moto,
)
from anywhere.bridge.testing.stack import BridgeProcess, Stack

from .people import PREFIX, Api, DrivePerson, sha

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="function")]

MiB = 1024 * 1024
BIG_QUOTA = 4 * 1024 * MiB


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    require_moto()
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def s3_stack(workdir: Path, storage_url: str, database_url: str | None = None, **extra) -> Stack:
    bridge_extra = {"logging": {"level": "DEBUG"}, **extra}
    if database_url:
        bridge_extra["database"] = {"url": database_url}
    return Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={"drive": {"storage_url": storage_url, "quota_bytes": BIG_QUOTA}},
        bridge_extra=bridge_extra,
    )


@pytest.fixture(scope="module")
def keyed_stack(s3, tmp_path_factory):
    """The drive on S3 with its keys in a credentials file named by the storage URL (the
    bridge's environment has none), and the bridge logging at DEBUG."""
    workdir = tmp_path_factory.mktemp("drive-s3")
    keys = workdir / "s3-credentials.yaml"
    keys.write_text(f"access_key_id: {TEST_ACCESS_KEY}\nsecret_access_key: {TEST_SECRET_KEY}\n")
    keys.chmod(0o600)
    stack = s3_stack(workdir, s3.storage_url("keyed", "drive", credentials_file=str(keys)))
    stack.bucket = "keyed"
    with stack:
        yield stack


def doctor(stack: Stack, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anywhere", "doctor", "-c", str(stack.config_path)]
        + ["-r", str(stack.registration_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def bucket_state(s3: S3Server, bucket: str) -> tuple[list[str], list[str]]:
    """(every object key, every unfinished multipart upload's key) in the bucket."""
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return sorted(keys), sorted(uploads)


def bytes_in_parts(s3: S3Server, bucket: str) -> int:
    """Bytes the S3 server holds in parts of unfinished multipart uploads."""
    client = s3.client()
    total = 0
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        total += sum(p["Size"] for p in parts.get("Parts", []))
    return total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_doctor_probes_the_s3_store_and_the_keys_appear_in_no_log(keyed_stack):
    alice = DrivePerson(await keyed_stack.user(), keyed_stack)
    a = Api(keyed_stack, alice)
    fid = await a.folder("Logged")
    data = os.urandom(3 * MiB)
    status, _, _ = await a.call("PUT", f"/folders/{fid}/files/a.bin", data=data)
    assert status == 201
    status, _, body = await a.call("GET", f"/folders/{fid}/files/a.bin")
    assert status == 200 and sha(body) == sha(data)
    status, _, body = await a.call(
        "GET", f"/folders/{fid}/files/a.bin", headers={"Range": "bytes=1000-1999"}
    )
    assert status == 206 and body == data[1000:2000]

    result = doctor(keyed_stack)
    line = next(x for x in result.stdout.splitlines() if "drive storage:" in x)
    assert line.startswith("[ok  ] drive storage: s3://keyed/drive?"), line
    assert "a probe was stored, read back and removed" in line
    log = keyed_stack.bridge.log_path.read_text("utf-8", "replace")
    assert "[debug" in log, "the bridge logs at DEBUG here (the level most likely to leak)"
    for secret in (TEST_SECRET_KEY, TEST_ACCESS_KEY):
        assert secret not in log, "an S3 key is in the bridge's log"
        assert secret not in result.stdout + result.stderr, "an S3 key is in doctor's output"
    await alice.close()


async def test_sigkill_during_a_large_upload_leaves_no_file_and_no_upload_in_s3(keyed_stack, s3):
    """A 1 GiB upload announced, streamed until the bridge has sent 256 MiB of it on to S3
    (its memory grew by far less meanwhile), then the bridge is SIGKILLed: after the
    restart no file is visible, no quota is used and S3 holds no part of it."""
    stack = keyed_stack
    alice = DrivePerson(await stack.user(), stack)
    a = Api(stack, alice)
    fid = await a.folder("Killed")
    before = bucket_state(s3, stack.bucket)
    rss_before = rss_bytes(stack.bridge.proc.pid)
    url = urlsplit(stack.bridge.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PUT {PREFIX}/folders/{fid}/files/big.bin HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {alice.token}\r\nContent-Length: {1024 * MiB}\r\n\r\n"
        ).encode()
    )
    chunk = os.urandom(MiB)
    sent = 0
    while True:
        writer.write(chunk)
        await writer.drain()
        sent += MiB
        if (
            sent % (16 * MiB) == 0
            and await asyncio.to_thread(bytes_in_parts, s3, stack.bucket) >= 256 * MiB
        ):
            break
        assert sent < 1024 * MiB, "the bridge never sent 256 MiB on to S3"
    growth = rss_bytes(stack.bridge.proc.pid) - rss_before
    stack.bridge.kill()
    writer.close()
    assert growth < 160 * MiB, f"the bridge grew by {growth // MiB} MiB streaming {sent // MiB}"
    assert bucket_state(s3, stack.bucket)[1], "the killed upload is unfinished in S3"

    await asyncio.to_thread(stack.bridge.start)  # ready only after the start-up sweep
    _, _, listing = await a.json("GET", f"/folders/{fid}/list")
    assert "big.bin" not in [e["name"] for e in listing["entries"]]
    _, _, quota = await a.json("GET", "/quota")
    assert quota["used"] == 0
    assert bucket_state(s3, stack.bucket) == before, "S3 kept something of the killed upload"
    await alice.close()


async def test_a_second_host_on_the_same_postgresql_and_s3_serves_every_file(s3, tmp_path):
    """Host one (PostgreSQL, S3) stores files and is stopped; host two — the same config
    in a new, empty folder with a new data folder — starts and serves every file."""
    with postgres_database_blocking() as database_url:
        stack = s3_stack(tmp_path / "one", s3.storage_url("stateless", "drive"), database_url)
        stack.bridge.env = s3.env
        with stack:
            alice = DrivePerson(await stack.user(), stack)
            a = Api(stack, alice)
            fid = await a.folder("Team")
            files = {f"doc{i}.bin": os.urandom(i * 700_000 + 1) for i in range(1, 5)}
            files["big.bin"] = os.urandom(20 * MiB)
            for name, data in files.items():
                status, _, _ = await a.call("PUT", f"/folders/{fid}/files/{name}", data=data)
                assert status == 201, name
            stack.bridge.stop()
            # host two: a copy of the config in another folder, data_dir new and empty
            config = yaml.safe_load(stack.config_path.read_text())
            host_two = tmp_path / "two"
            host_two.mkdir()
            config["data_dir"] = str(host_two / "data")
            (host_two / "config.yaml").write_text(yaml.safe_dump(config))
            (host_two / "config.yaml").chmod(0o600)
            shutil.rmtree(tmp_path / "one" / "bridge" / "data", ignore_errors=True)
            second = BridgeProcess(host_two / "config.yaml", env=s3.env)
            stack.bridge = second
            await asyncio.to_thread(second.start)
            _, _, listing = await a.json("GET", f"/folders/{fid}/list")
            assert sorted(e["name"] for e in listing["entries"]) == sorted(files)
            for name, data in files.items():
                status, _, body = await a.call("GET", f"/folders/{fid}/files/{name}")
                assert status == 200 and sha(body) == sha(data), name
            # and it takes new files: nothing of host one is needed
            status, _, _ = await a.call("PUT", f"/folders/{fid}/files/new.txt", data=b"two")
            assert status == 201
            assert not (host_two / "data" / "drive").exists(), "host two kept blobs locally"
            await alice.close()
