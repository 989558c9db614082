"""The blob store on a PyFilesystem2 filesystem (``osfs://``, ``mem://``, ``s3://``...).

Layout inside the root::

    blobs/ab/cd/abcd...   complete content, named by its SHA-256
    tmp/<random>.part     content still being written (never read)
    staging/              files prepared for ``adopt`` by their owner (the drive's
                          resumable uploads); the store neither reads nor sweeps them

PyFilesystem2 is synchronous: every call runs in a worker thread, and writes are
buffered to about a megabyte per call so a large upload costs few thread hops. A writer
hashes and writes each buffer at the same time in two threads (both release the GIL) while
the next buffer fills, and makes the file durable once, at the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import fs
import fs.errors
import fs.opener.errors
from fs.base import FS

from .base import (
    SHA256_RE,
    Blob,
    BlobError,
    BlobNotFound,
    BlobTooLarge,
    UnsafeBlobPath,
    check_sha256,
    stream_file,
)

#: Bytes gathered before they go to the worker threads (one such buffer is being
#: hashed and written while the next one fills: memory per upload stays ~2 buffers).
#: Larger buffers measured slower here (2 and 4 MiB: twice the CPU time per GiB).
WRITE_BUFFER = 1 << 20
TMP_DIR = "tmp"
BLOB_DIR = "blobs"
STAGING_DIR = "staging"


def blob_path(sha256: str) -> str:
    check_sha256(sha256)
    return f"{BLOB_DIR}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class FSBlobStore:
    """:class:`anywhere.storage.blobs.BlobStore` on a PyFilesystem2 filesystem."""

    def __init__(self, filesystem: FS, url: str) -> None:
        self.fs = filesystem
        self.url = url
        self._root_real: str | None = None
        if filesystem.hassyspath("/"):
            self._root_real = os.path.realpath(filesystem.getsyspath("/"))
        filesystem.makedirs(TMP_DIR, recreate=True)
        filesystem.makedirs(BLOB_DIR, recreate=True)
        if self._root_real is not None:
            filesystem.makedirs(STAGING_DIR, recreate=True)

    @classmethod
    def open(cls, url: str) -> FSBlobStore:
        try:
            filesystem = fs.open_fs(url, create=True)
        except fs.opener.errors.UnsupportedProtocol as exc:
            raise BlobError(
                f"no filesystem opener for {url!r} ({exc}); use osfs://PATH or mem://, or "
                "install the package that provides it (e.g. fs-s3fs for s3://)"
            ) from exc
        except (fs.errors.CreateFailed, fs.opener.errors.OpenerError) as exc:
            raise BlobError(f"cannot open the drive storage {url!r}: {exc}") from exc
        return cls(filesystem, url)

    # ----- safety -----
    def _checked(self, path: str) -> str:
        """Refuse a path that resolves outside the root (a symlink planted in the store)."""
        if self._root_real is not None:
            real = os.path.realpath(self.fs.getsyspath(path))
            if real != self._root_real and not real.startswith(self._root_real + os.sep):
                raise UnsafeBlobPath(
                    f"{path} in the drive storage leads outside it (to {real}); refusing to "
                    "use it — remove the link"
                )
        return path

    # ----- writing -----
    async def writer(self, max_size: int | None = None) -> FSBlobWriter:
        name = f"{TMP_DIR}/{secrets.token_hex(16)}.part"
        handle = await asyncio.to_thread(self._open_tmp, name)
        return FSBlobWriter(self, name, handle, max_size)

    def _open_tmp(self, name: str) -> BinaryIO:
        self._checked(TMP_DIR)
        return self.fs.openbin(name, "w")

    def install(self, tmp: str, sha256: str) -> None:
        """Put a finished temporary file (one of this store's writers') at its content's
        place, durably; identical content already there is kept once."""
        final = blob_path(sha256)
        if self.fs.exists(final):
            self._checked(final)
            self.fs.remove(tmp)  # identical content is stored once
            return
        parent = final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, recreate=True)
        self._checked(parent)
        self.fs.move(tmp, final, overwrite=True)

    # ----- taking a local file whole -----
    def staging_folder(self) -> Path | None:
        """``staging/`` in the root, when the filesystem is a local one (a file there
        is adopted by a rename)."""
        if self._root_real is None:
            return None
        return Path(self.fs.getsyspath(self._checked(STAGING_DIR)))

    async def adopt(self, path: Path, sha256: str, size: int) -> Blob:
        """Rename ``path`` to the content's place (the caller made it durable); a file on
        another filesystem, or a store that is not a local folder, is streamed."""
        if self._root_real is not None:
            try:
                await asyncio.to_thread(self._rename_in, Path(path), sha256, size)
                return Blob(sha256, size)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise BlobError(f"cannot store {path}: {exc}") from exc
        return await stream_file(self, Path(path), sha256, size)

    def _rename_in(self, path: Path, sha256: str, size: int) -> None:
        found = path.stat().st_size
        if found != size:
            raise BlobError(f"{path} has {found} bytes, not the {size} announced")
        final = blob_path(sha256)
        if self.fs.exists(final):
            self._checked(final)
            path.unlink()  # identical content is stored once
            return
        parent = final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, recreate=True)
        target = self.fs.getsyspath(self._checked(parent))
        os.replace(path, os.path.join(target, sha256))
        folder = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)  # the new name is durable too
        finally:
            os.close(folder)

    def remove_quietly(self, path: str) -> None:
        with contextlib.suppress(fs.errors.ResourceNotFound):
            self.fs.remove(path)

    # ----- reading -----
    async def read(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._open_blob, sha256)
        try:
            if start:
                await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    def _open_blob(self, sha256: str) -> BinaryIO:
        path = blob_path(sha256)
        try:
            self._checked(path)
            return self.fs.openbin(path, "r")
        except fs.errors.ResourceNotFound as exc:
            raise BlobNotFound(f"the content {sha256[:12]} is missing from the storage") from exc

    async def head(self, sha256: str, length: int = 4096) -> bytes:
        def read_head() -> bytes:
            with self._open_blob(sha256) as handle:
                return handle.read(length)

        return await asyncio.to_thread(read_head)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.fs.exists, blob_path(sha256))

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.remove_quietly, blob_path(sha256))

    async def sweep_partial(self) -> int:
        def sweep() -> int:
            names = self.fs.listdir(TMP_DIR)
            for name in names:
                self.remove_quietly(f"{TMP_DIR}/{name}")
            return len(names)

        return await asyncio.to_thread(sweep)

    async def hashes(self) -> list[str]:
        def walk() -> list[str]:
            if not self.fs.exists(BLOB_DIR):
                return []
            names = (path.rsplit("/", 1)[-1] for path in self.fs.walk.files(BLOB_DIR))
            return [name for name in names if SHA256_RE.fullmatch(name)]

        return await asyncio.to_thread(walk)

    async def close(self) -> None:
        await asyncio.to_thread(self.fs.close)


class FSBlobWriter:
    """Streams content to a temporary file, hashing as it goes.

    Each full buffer is hashed and written by two worker threads at once, while the caller
    fills the next; a later :meth:`write` (or the commit) waits for the previous buffer
    first, so buffers are hashed and written in order and an error comes out at the next
    call. Nothing is acknowledged before :meth:`commit`, which waits for the last buffer,
    fsyncs the file once and moves it into place."""

    def __init__(self, store: FSBlobStore, tmp: str, handle: Any, max_size: int | None) -> None:
        self.store = store
        self.tmp = tmp
        self.handle = handle
        self.max_size = max_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._in_flight: list[asyncio.Future[Any]] = []
        self._done = False

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise BlobError("this write was already finished")
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            await self.abort()
            raise BlobTooLarge(self.max_size)
        self._buffer.append(bytes(chunk))
        self._buffered += len(chunk)
        if self._buffered >= WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        await self._settle()
        if data:
            self._in_flight = [
                asyncio.ensure_future(asyncio.to_thread(self._hash.update, data)),
                asyncio.ensure_future(asyncio.to_thread(self.handle.write, data)),
            ]

    async def _settle(self) -> None:
        """Wait until the buffer in flight is hashed and written (both, even when one
        fails); raise the first error."""
        in_flight, self._in_flight = self._in_flight, []
        if not in_flight:
            return
        # shield: a cancelled caller must not leave a thread writing into a closed file
        results = await asyncio.shield(asyncio.gather(*in_flight, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def commit(self) -> Blob:
        if self._done:
            raise BlobError("this write was already finished")
        try:
            await self._flush()
            await self._settle()
            await asyncio.to_thread(self._close_durably)
            sha256 = self._hash.hexdigest()
            await asyncio.to_thread(self.store.install, self.tmp, sha256)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        return Blob(sha256, self.size)

    def _close_durably(self) -> None:
        self.handle.flush()
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.fsync(self.handle.fileno())
        self.handle.close()

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = []
        with contextlib.suppress(Exception):
            await self._settle()

        def drop() -> None:
            with contextlib.suppress(Exception):
                self.handle.close()
            self.store.remove_quietly(self.tmp)

        await asyncio.to_thread(drop)
