"""A bridge started on a database that lacks the drive's rows (a wrong database.url, an
old backup) keeps every file in the storage, and says so, instead of sweeping them."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from anywhere.bridge.testing.stack import Stack

from .people import Api, DrivePerson

pytestmark = pytest.mark.e2e


async def test_a_fresh_database_does_not_cost_the_storage_its_files(drive_stack, tmp_path):
    person = DrivePerson(await drive_stack.user(), drive_stack)
    try:
        api = Api(drive_stack, person)
        folder = await api.folder("Precious")
        data = os.urandom(200_000)
        status, _, _ = await api.call("PUT", f"/folders/{folder}/files/thesis.pdf", data=data)
        assert status == 201
    finally:
        await person.close()
    stored = drive_stack.drive_root / "blobs"
    digest = hashlib.sha256(data).hexdigest()
    before = sorted(p.name for p in stored.rglob("*") if p.is_file())
    assert digest in before

    # the same storage, another (empty) database
    other = Stack(
        tmp_path / "other",
        ["basics", "drive"],
        settings={"drive": {"storage_url": f"osfs://{drive_stack.drive_root}"}},
    )
    with other:
        log = other.bridge.log_path
        for _ in range(100):
            if "that no file uses was found and kept" in log.read_text():
                break
            await asyncio.sleep(0.1)
        text = log.read_text()
    assert "stored content that no file uses was found and kept" in text, text[-2000:]
    assert "check database.url" in text
    assert sorted(p.name for p in stored.rglob("*") if p.is_file()) == before
