"""``anywhere drive migrate-storage TO_URL``: a drive on a local folder moved to S3 (a
real S3 server, moto's), interrupted by SIGKILL and run again; the bridge switched to
S3 serves every file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys

import pytest
import yaml

from anywhere.bridge.testing.s3server import S3Server, require_moto
from anywhere.bridge.testing.stack import Stack
from anywhere.storage.stores import open_blob_store

from .people import Api, DrivePerson, sha

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="function")]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    require_moto()
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def migrate(stack: Stack, to_url: str, s3: S3Server, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "anywhere", "drive", "migrate-storage", to_url]
        + ["-c", str(stack.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **s3.env},
        **popen,
    )


async def test_migrate_storage_copies_verifies_survives_a_kill_and_the_switch_serves_all(
    s3, tmp_path, monkeypatch
):
    store = tmp_path / "drive-store"
    stack = Stack(
        tmp_path,
        ["basics", "policy", "drive"],
        settings={"drive": {"storage_url": f"osfs://{store}", "quota_bytes": 1 << 30}},
    )
    to_url = s3.storage_url("moved", "drive")
    with stack:
        alice = DrivePerson(await stack.user(), stack)
        a = Api(stack, alice)
        fid = await a.folder("Moving")
        files = {f"f{i}.bin": os.urandom(300_000 * i + 7) for i in range(1, 7)}
        for name, data in files.items():
            status, _, _ = await a.call("PUT", f"/folders/{fid}/files/{name}", data=data)
            assert status == 201
        stack.bridge.stop()

        # the first run is killed once it has copied one blob
        first = migrate(stack, to_url, s3)
        seen = []
        for line in first.stdout:
            seen.append(line)
            if line.startswith("copied 1/"):
                first.send_signal(signal.SIGKILL)
                break
        first.wait(30)
        assert first.returncode == -signal.SIGKILL, "".join(seen)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
        target = open_blob_store(to_url)
        try:
            partly = await target.hashes()
        finally:
            await target.close()
        assert 1 <= len(partly) < len(files), "the kill came part way through"

        # the second run copies only the rest, checks what is there, and says how to switch
        second = migrate(stack, to_url, s3)
        output, _ = await asyncio.to_thread(second.communicate, timeout=300)
        assert second.returncode == 0, output
        assert f"already there and verified {len(partly)}" in output, output
        assert f"plugins.settings.drive.storage_url: {to_url}" in output, output
        target = open_blob_store(to_url)
        try:
            assert sorted(await target.hashes()) == sorted(
                hashlib.sha256(d).hexdigest() for d in files.values()
            )
            assert await target.incomplete_uploads() == []
        finally:
            await target.close()

        # switch as told, and the bridge serves every file from S3 (the folder is gone)
        config = yaml.safe_load(stack.config_path.read_text())
        config["plugins"]["settings"]["drive"]["storage_url"] = to_url
        stack.config_path.write_text(yaml.safe_dump(config))
        os.rename(store, tmp_path / "old-drive-store")
        stack.bridge.env = s3.env
        await asyncio.to_thread(stack.bridge.start)
        for name, data in files.items():
            status, _, body = await a.call("GET", f"/folders/{fid}/files/{name}")
            assert status == 200 and sha(body) == sha(data), name
        await alice.close()


async def test_migrate_storage_refuses_damaged_content_and_does_not_say_switch(s3, tmp_path):
    """A blob whose bytes no longer match its SHA-256 is not copied, and no switch is
    offered."""
    store = tmp_path / "store"
    source = open_blob_store(f"osfs://{store}")
    writer = await source.writer()
    await writer.write(b"good content")
    blob = await writer.commit()
    await source.close()
    path = store / "blobs" / blob.sha256[:2] / blob.sha256[2:4] / blob.sha256
    path.write_bytes(b"rotten content")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "homeserver": {"url": "http://127.0.0.1:1", "domain": "example.org"},
                "appservice": {"as_token": "a" * 32, "hs_token": "h" * 32},
                "operations": {"token": "o" * 32},
                "data_dir": str(tmp_path / "data"),
                "plugins": {"settings": {"drive": {"storage_url": f"osfs://{store}"}}},
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "anywhere", "drive", "migrate-storage"]
        + [s3.storage_url("damaged", "d"), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **s3.env},
    )
    assert result.returncode != 0
    assert f"the content {blob.sha256[:12]} in the old storage does not match" in result.stderr
    assert "storage_url:" not in result.stdout
