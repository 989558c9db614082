"""The blob store contract as one test, for plugin authors' stores and Anywhere's own.

A store a plugin gives through ``anywhere_blob_stores`` keeps the drive's file content;
the drive relies on every point checked here. In your plugin's tests::

    from anywhere.bridge.testing.blobstore import check_blob_store

    async def test_my_store_keeps_the_contract(tmp_path):
        await check_blob_store(MyStore(tmp_path))

Give it an empty store. It raises ``AssertionError`` naming the broken promise, and
closes the store at the end.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from anywhere.storage.blobs import (
    Blob,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    adopt_file,
    staging_folder,
)

CHUNK = 256 * 1024


async def _write(store: BlobStore, data: bytes, max_size: int | None = None) -> Blob:
    writer = await store.writer(max_size=max_size)
    for i in range(0, len(data), CHUNK):
        await writer.write(data[i : i + CHUNK])
    return await writer.commit()


async def _read(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start, end, chunk_size=7000)])


async def _raises(exc_type: type[Exception], call, promise: str) -> None:
    try:
        result = call()
        if hasattr(result, "__anext__"):
            async for _ in result:
                pass
        else:
            await result
    except exc_type:
        return
    except Exception as exc:  # the wrong error is as bad as none
        raise AssertionError(f"{promise}: raised {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{promise}: nothing was raised")


async def check_blob_store(store: BlobStore) -> None:
    """Exercise ``store`` (empty) against :class:`anywhere.storage.blobs.BlobStore`'s contract."""
    try:
        await _check(store)
    finally:
        await store.close()


async def _check(store: BlobStore) -> None:
    assert await store.hashes() == [], "an empty store lists no content"
    data = os.urandom(3 * CHUNK + 123)
    digest = hashlib.sha256(data).hexdigest()

    # content is named by its SHA-256, kept once, and read back whole, in ranges, by head
    blob = await _write(store, data)
    assert blob == Blob(digest, len(data)), f"commit returns the SHA-256 and size: {blob}"
    assert await _write(store, data) == blob, "the same content gives the same blob"
    assert await store.hashes() == [digest], "identical content is listed once"
    assert await store.exists(digest), "committed content exists"
    assert await _read(store, digest) == data, "read returns the content"
    assert await _read(store, digest, 1000, 90_000) == data[1000:90_000], "read [start, end)"
    assert await _read(store, digest, len(data) - 5) == data[-5:], "read from start to the end"
    assert await _read(store, digest, 10, 10) == b"", "an empty range reads nothing"
    assert await store.head(digest, 100) == data[:100], "head returns the first bytes"
    small = await _write(store, b"")
    assert small == Blob(hashlib.sha256(b"").hexdigest(), 0), "empty content is content"
    assert await _read(store, small.sha256) == b""

    # what is not committed is never visible, and start-up sweeps it
    unfinished = await store.writer()
    await unfinished.write(b"half an upload")
    half = hashlib.sha256(b"half an upload").hexdigest()
    assert not await store.exists(half), "an unfinished write is not visible"
    assert half not in await store.hashes(), "an unfinished write is not listed"
    assert await store.sweep_partial() >= 1, "sweep_partial counts the unfinished write"
    assert await store.sweep_partial() == 0, "nothing is left to sweep after a sweep"
    dropped = await store.writer()
    await dropped.write(b"changed my mind")
    await dropped.abort()
    assert not await store.exists(hashlib.sha256(b"changed my mind").hexdigest())
    assert await store.sweep_partial() == 0, "an aborted write leaves nothing to sweep"

    # a write over its limit keeps nothing
    big = os.urandom(5000)
    await _raises(BlobTooLarge, lambda: _write(store, big, max_size=4096), "over max_size")
    assert not await store.exists(hashlib.sha256(big).hexdigest()), "too large: not kept"
    assert await store.sweep_partial() == 0, "too large: nothing left behind"

    # missing content and names that are not hashes
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not await store.exists(missing)
    await _raises(BlobNotFound, lambda: store.read(missing), "reading missing content")
    await _raises(BlobNotFound, lambda: store.head(missing), "head of missing content")
    for bad in ("../../etc/passwd", digest.upper(), digest[:-1], ""):
        await _raises(BlobError, lambda bad=bad: store.read(bad), f"read({bad!r})")

    # delete removes; deleting what is not there is no error
    await store.delete(digest)
    assert not await store.exists(digest), "deleted content is gone"
    assert await store.hashes() == [small.sha256], "deleted content is not listed"
    await store.delete(digest)
    await store.delete(small.sha256)
    assert await store.hashes() == []

    # a complete local file is taken whole (adopt_file: the store's adopt, or streamed)
    await _check_adopt(store)


async def _check_adopt(store: BlobStore) -> None:
    data = os.urandom(2 * CHUNK + 77)
    digest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory() as spare:
        folder = staging_folder(store) or Path(spare)
        path = folder / f"check-{os.getpid()}.part"
        path.write_bytes(data)
        assert await store.sweep_partial() == 0, "a sweep leaves the staging folder alone"
        assert path.exists(), "a sweep leaves the staging folder alone"
        blob = await adopt_file(store, path, digest, len(data))
        assert blob == Blob(digest, len(data)), f"adopt_file returns the SHA-256 and size: {blob}"
        assert not path.exists(), "an adopted file is gone from where it was"
        assert await _read(store, digest) == data, "adopted content reads back"
        path.write_bytes(data)
        assert await adopt_file(store, path, digest, len(data)) == blob, "adopted again: same"
        assert not path.exists(), "a file adopted again is gone too"
        assert await store.hashes() == [digest], "adopted content is listed once"
    await store.delete(digest)
    assert await store.hashes() == []
