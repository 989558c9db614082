"""The resumable upload's staging file on its own: pieces written in any order, at once,
are hashed in order (as they are written where hashing is, read back otherwise); the
journal says what is kept after a restart, and a piece whose last bytes could not be made
durable keeps none of them."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from anywhere.plugins.drive.webapp.uploads import WRITE_BUFFER, Upload

SIZE = 5 * WRITE_BUFFER + 123


def _meta(tmp_path, size: int = SIZE) -> dict:
    staged = tmp_path / "staging" / "u.part"
    staged.parent.mkdir(exist_ok=True)
    return {"id": "u", "size": size, "staged": str(staged), "folder": 1, "path": "x", "mime": None}


async def _piece(upload: Upload, data: bytes, start: int, end: int, durable: int | None = None):
    """Send ``data[start:end]`` as the bridge's append does: a megabyte at a time."""
    number = upload.begin_piece(start, end - start)
    handle = os.open(upload.path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for at in range(start, end, WRITE_BUFFER):
            chunk = data[at : min(at + WRITE_BUFFER, end)]
            await upload.hash.write(handle, chunk, at)
            await upload.wrote(number, at + len(chunk))
            await asyncio.sleep(0)  # let the other pieces go on (they arrive at once)
        os.fsync(handle)
    finally:
        os.close(handle)
    await upload.end_piece(number, end if durable is None else durable)


@pytest.mark.asyncio(loop_scope="function")
async def test_pieces_in_any_order_are_hashed_in_order_and_the_journal_keeps_them(tmp_path):
    data = os.urandom(SIZE)
    upload = Upload(tmp_path, _meta(tmp_path))
    hashing = asyncio.create_task(upload.finished())
    w = WRITE_BUFFER
    pieces = [(3 * w, SIZE), (w, 3 * w), (0, w)]  # the last first, all at once
    await asyncio.gather(*(_piece(upload, data, start, end) for start, end in pieces))
    digest = hashlib.sha256(data).hexdigest()
    assert await hashing == digest and upload.kept() == [[0, SIZE]]
    assert upload.path.read_bytes() == data
    # after a restart, the journal says what is kept and the file is hashed once more
    again = Upload(tmp_path, _meta(tmp_path))
    assert again.kept() == [[0, SIZE]] and again.complete()
    assert await again.finished() == digest


@pytest.mark.asyncio(loop_scope="function")
async def test_bytes_that_were_not_made_durable_are_not_kept_and_the_hash_is_redone(tmp_path):
    data = os.urandom(SIZE)
    upload = Upload(tmp_path, _meta(tmp_path))
    hashing = asyncio.create_task(upload.finished())
    # the piece's last write or its fsync failed: none of its bytes count as kept
    await _piece(upload, data, 0, 2 * WRITE_BUFFER, durable=0)
    assert upload.kept() == [] and upload.first_missing() == 0
    assert Upload(tmp_path, _meta(tmp_path)).kept() == []  # nor after a restart
    changed = bytes(b ^ 1 for b in data[: 2 * WRITE_BUFFER]) + data[2 * WRITE_BUFFER :]
    await _piece(upload, changed, 0, SIZE)  # sent again, other bytes this time
    assert await hashing == hashlib.sha256(changed).hexdigest()


def test_a_line_cut_off_in_the_journal_is_not_a_kept_range(tmp_path):
    (tmp_path / "u.kept").write_text("0 100\n100 2")  # the bridge died writing the second
    assert Upload(tmp_path, _meta(tmp_path)).kept() == [[0, 100]]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_cancelled_write_ends_before_its_caller_goes_on_to_close_the_file(tmp_path):
    upload = Upload(tmp_path, _meta(tmp_path))
    handle = os.open(upload.path, os.O_WRONLY | os.O_CREAT, 0o600)
    data = os.urandom(WRITE_BUFFER)
    writing = asyncio.create_task(upload.hash.write(handle, data, 0))
    await asyncio.sleep(0)  # the write has begun in its thread
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    # the thread ended first: written and hashed, the hash's position with it
    assert not upload.hash.busy and upload.hash.position == len(data)
    os.close(handle)
    assert upload.path.read_bytes() == data
