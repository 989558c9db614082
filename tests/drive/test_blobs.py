"""The blob store: content by SHA-256, visible only once complete, never outside its root."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
from pathlib import Path

import fs
import pytest

from anywhere.bridge.testing.blobstore import check_blob_store
from anywhere.plugins.drive.names import InvalidName
from anywhere.storage import blobs
from anywhere.storage.blobs import (
    Blob,
    BlobError,
    BlobTooLarge,
    UnsafeBlobPath,
    adopt_file,
    staging_folder,
)
from anywhere.storage.blobs_fs import WRITE_BUFFER, FSBlobStore, blob_path
from anywhere.storage.stores import open_blob_store


async def _store(store, data: bytes, max_size=None):
    writer = await store.writer(max_size=max_size)
    for i in range(0, len(data), 300_000):
        await writer.write(data[i : i + 300_000])
    return await writer.commit()


async def _read(store, sha, start=0, end=None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha, start, end, chunk_size=4096)])


@pytest.mark.asyncio(loop_scope="function")
async def test_content_is_stored_once_by_its_hash_and_read_back_in_ranges(blob_url):
    store = open_blob_store(blob_url)
    data = os.urandom(3_000_000)
    first = await _store(store, data)
    again = await _store(store, data)
    assert first == again
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size == len(data)
    assert await _read(store, first.sha256) == data
    assert await _read(store, first.sha256, 1000, 5000) == data[1000:5000]
    assert await _read(store, first.sha256, len(data) - 10) == data[-10:]
    blobs = [p for p in store.fs.walk.files("/blobs")]
    assert len(blobs) == 1  # identical content kept once
    assert store.fs.listdir("tmp") == []
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_an_unfinished_write_is_invisible_and_swept(blob_url):
    store = open_blob_store(blob_url)
    writer = await store.writer()
    await writer.write(os.urandom(2_500_000))  # a client that never finishes
    assert list(store.fs.walk.files("/blobs")) == []
    assert await store.sweep_partial() == 1  # what start-up does after a crash
    assert store.fs.listdir("tmp") == []
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_write_over_its_limit_keeps_nothing(blob_url):
    store = open_blob_store(blob_url)
    with pytest.raises(BlobTooLarge, match="larger than the 1000 bytes"):
        await _store(store, b"x" * 5000, max_size=1000)
    assert store.fs.listdir("tmp") == []
    assert list(store.fs.walk.files("/blobs")) == []
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_symlink_planted_in_the_store_leading_out_is_refused(tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    root = tmp_path / "store"
    store = open_blob_store(f"osfs://{root}")
    sha = hashlib.sha256(b"not yours").hexdigest()
    link = root / blob_path(sha)
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    with pytest.raises(UnsafeBlobPath, match="leads outside"):
        await _read(store, sha)
    with pytest.raises(UnsafeBlobPath):
        await _store(store, b"not yours")  # nor written through
    assert secret.read_text() == "not yours"
    await store.close()


def test_hashes_that_are_not_hashes_never_become_paths():
    with pytest.raises(BlobError, match="not a SHA-256"):
        blob_path("../../etc/passwd")


def test_an_unknown_filesystem_scheme_says_what_to_install():
    with pytest.raises(BlobError, match="no filesystem opener"):
        open_blob_store("nosuchfs://bucket")
    assert fs.open_fs("mem://")  # the openers the drive relies on are there


def test_open_blob_store_is_where_plugin_authors_import_it_from():
    """anywhere.storage.blobs stays the public module (the interface lives in .base, the
    opener in .stores, so that the stores import neither and no circle forms)."""
    assert blobs.open_blob_store is open_blob_store
    assert "open_blob_store" in blobs.__all__
    with pytest.raises(AttributeError):
        _ = blobs.no_such_name


@pytest.mark.asyncio(loop_scope="function")
async def test_the_built_in_store_keeps_the_contract_plugin_stores_are_held_to(blob_url):
    await check_blob_store(open_blob_store(blob_url))


@pytest.mark.asyncio(loop_scope="function")
async def test_a_plugin_scheme_is_opened_by_its_opener_before_pyfilesystem2():
    opened = []

    def opener(url):
        opened.append(url)
        return open_blob_store("mem://")

    store = open_blob_store("Mem://anything", {"mem": opener})
    assert opened == ["Mem://anything"]  # schemes are case-insensitive, the URL is whole
    await store.close()


def test_an_opener_that_returns_no_store_is_named():
    with pytest.raises(BlobError, match=r"for odd:// \(dict\) lacks writer, read"):
        open_blob_store("odd://x", {"odd": lambda url: {}})


STEERED = [
    "../../outside",
    "/etc/passwd",
    "ab/../../../outside",
    "A" * 64,  # upper case: not how hashes are kept, so not a name to trust
    "a" * 63,
    "a" * 64 + "/..",
    "a" * 64 + "\n",
    "٣" * 64,  # digits of another script
    "",
]


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("steered", STEERED)
async def test_a_hash_from_outside_cannot_steer_any_store_call_out_of_its_root(tmp_path, steered):
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    store = open_blob_store(f"osfs://{root}")
    try:
        for call in (
            lambda: _read(store, steered),
            lambda: store.head(steered),
            lambda: store.exists(steered),
            lambda: store.delete(steered),
        ):
            with pytest.raises(BlobError, match="not a SHA-256"):
                await call()
        assert outside.read_bytes() == b"precious"
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_names_from_outside_never_become_storage_paths(drive, tmp_path):
    """Content is kept under its hash only: whatever a file is called, nothing lands
    anywhere but blobs/ab/cd/<hash> (and tmp/ while it streams in)."""
    from .conftest import chunks_of

    work = await drive.access.create_folder("@alice:test", "Work")
    data = b"content"
    sha = hashlib.sha256(data).hexdigest()
    await drive.tree.mkdir(work, ["blobs", "tmp"], "@alice:test")
    await drive.tree.mkdir(work, ["tmp"], "@alice:test")
    for name in (sha, "blobs/tmp/x", f"blobs/{sha[:2]}", "tmp/evil.part", "..x"):
        await drive.upload("@alice:test", work, name, chunks_of(data))
    for name in ("../escape", "/abs", "a/../../b", "a\\..\\b", "x.."):
        with pytest.raises(InvalidName, match="stay inside|absolute|separate folders|rename"):
            await drive.upload("@alice:test", work, name, chunks_of(data))
    stored = sorted(p for p in drive.blobs.fs.walk.files("/"))
    assert stored == [f"/{blob_path(sha)}"]
    assert not (tmp_path / "escape").exists() and not (tmp_path / "b").exists()


class _GatedFile:
    """A temporary blob file whose writes wait until the test lets them through."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.writing = threading.Event()
        self.release = threading.Event()
        self.fail: OSError | None = None

    def write(self, data: bytes) -> int:
        self.writing.set()
        if not self.release.wait(timeout=60):  # a guard against a hang, not a timing check
            raise AssertionError("the test never let the write through")
        if self.fail is not None:
            raise self.fail
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


class _GatedStore(FSBlobStore):
    def __init__(self) -> None:
        super().__init__(fs.open_fs("mem://"), "mem://")
        self.files: list[_GatedFile] = []

    def _open_tmp(self, name: str):
        self.files.append(_GatedFile(super()._open_tmp(name)))
        return self.files[-1]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_full_buffer_is_written_while_the_next_one_fills_and_committed_once_on_disk():
    store = _GatedStore()
    writer = await store.writer()
    data = os.urandom(WRITE_BUFFER + 12345)
    # the first buffer goes to the worker threads; write() does not wait for the disk
    await writer.write(data[:WRITE_BUFFER])
    gated = store.files[0]
    await asyncio.to_thread(gated.writing.wait)
    await writer.write(data[WRITE_BUFFER:])  # buffered, while the first is still writing
    assert store.fs.listdir("tmp") and list(store.fs.walk.files("/blobs")) == []
    committing = asyncio.ensure_future(writer.commit())
    gated.release.set()
    blob = await committing
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert await _read(store, blob.sha256) == data
    assert store.fs.listdir("tmp") == []
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_failed_write_of_a_buffer_in_flight_fails_the_commit_and_keeps_nothing():
    store = _GatedStore()
    writer = await store.writer()
    await writer.write(os.urandom(WRITE_BUFFER))
    gated = store.files[0]
    gated.fail = OSError(28, "No space left on device")
    gated.release.set()
    with pytest.raises(OSError, match="No space left"):
        await writer.commit()
    assert store.fs.listdir("tmp") == []
    assert list(store.fs.walk.files("/blobs")) == []
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_staged_file_is_renamed_into_place_without_a_copy(tmp_path):
    store = open_blob_store(f"osfs://{tmp_path / 'store'}")
    staging = staging_folder(store)
    assert staging == tmp_path / "store" / "staging"
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    staged = staging / "upload.part"
    staged.write_bytes(data)
    inode = staged.stat().st_ino
    assert await adopt_file(store, staged, sha, len(data)) == Blob(sha, len(data))
    assert os.stat(store.fs.getsyspath(blob_path(sha))).st_ino == inode  # renamed, not copied
    assert not staged.exists() and await store.sweep_partial() == 0
    # a file that is not what the caller says is refused, and left where it is
    staged.write_bytes(b"abc")
    with pytest.raises(BlobError, match="3 bytes, not the 4 announced"):
        await adopt_file(store, staged, hashlib.sha256(b"abcd").hexdigest(), 4)
    assert staged.read_bytes() == b"abc"
    with pytest.raises(BlobError, match="not a SHA-256"):
        await adopt_file(store, staged, "../../x", 3)
    await store.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_file_the_store_cannot_rename_is_streamed_in_and_checked(tmp_path):
    mem = open_blob_store("mem://")
    assert staging_folder(mem) is None  # nowhere to rename into: streamed
    path = tmp_path / "upload.part"
    path.write_bytes(b"abc")
    with pytest.raises(BlobError, match="changed while it waited"):
        await adopt_file(mem, path, hashlib.sha256(b"abd").hexdigest(), 3)
    assert path.exists()  # left to its owner
    await mem.close()
    other_disk = Path("/dev/shm")
    if not other_disk.is_dir() or os.stat(other_disk).st_dev == os.stat(tmp_path).st_dev:
        return
    store = open_blob_store(f"osfs://{tmp_path / 'store'}")
    with tempfile.NamedTemporaryFile(dir=other_disk, delete=False) as elsewhere:
        elsewhere.write(b"from another filesystem")
    sha = hashlib.sha256(b"from another filesystem").hexdigest()
    assert await adopt_file(store, Path(elsewhere.name), sha, 23) == Blob(sha, 23)
    assert not Path(elsewhere.name).exists()
    assert await _read(store, sha) == b"from another filesystem"
    await store.close()
