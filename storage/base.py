"""The blob store interface and its helpers, which the stores themselves import.

Read :mod:`anywhere.storage.blobs`, the public module that re-exports all of this with
``open_blob_store`` (kept apart so that the stores and the opener form no import circle).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class BlobError(Exception):
    """A blob store problem a person or operator can act on (the message says what)."""


class BlobNotFound(BlobError):
    """No blob with that hash is stored."""


class BlobTooLarge(BlobError):
    """A write went over the size limit it was opened with; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the content is larger than the {limit} bytes allowed here")
        self.limit = limit


class UnsafeBlobPath(BlobError):
    """A stored path resolves outside the store's root (for example through a symlink)."""


@dataclass(frozen=True)
class Blob:
    """Stored content: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int


class BlobWriter(Protocol):
    """One content being written. ``commit`` makes it visible; ``abort`` drops it."""

    size: int

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> Blob: ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    """Anywhere's own small storage interface for file content."""

    url: str

    async def writer(self, max_size: int | None = None) -> BlobWriter:
        """Start writing new content; over ``max_size`` bytes, ``write`` raises
        :class:`BlobTooLarge` and keeps nothing."""
        ...

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of a blob."""
        ...

    async def head(self, sha256: str, length: int = 4096) -> bytes:
        """The first ``length`` bytes (for content sniffing)."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> None: ...

    async def sweep_partial(self) -> int:
        """Remove temporary files left by interrupted writes; returns how many."""
        ...

    async def hashes(self) -> list[str]:
        """The SHA-256 of every stored blob (for sweeping content nothing uses)."""
        ...

    async def close(self) -> None: ...


def check_sha256(sha256: str) -> str:
    """Refuse anything but a lower-case hex SHA-256: it becomes a path."""
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise BlobError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


class AdoptingBlobStore(BlobStore, Protocol):
    """What a store may offer besides :class:`BlobStore` (optional; see :func:`adopt_file`)."""

    def staging_folder(self) -> Path | None:
        """A local folder on the store's own filesystem where a file can be prepared for
        :meth:`adopt` to take without copying (the store never sweeps it, and lists
        nothing in it); ``None`` when the store has none now."""
        ...

    async def adopt(self, path: Path, sha256: str, size: int) -> Blob:
        """Take the complete local file ``path`` (``size`` bytes with SHA-256 ``sha256``,
        computed by the caller as it wrote the file, made durable by it too) as content:
        moved into place where the store can, streamed otherwise. The file is gone
        afterwards; on an error it is left to the caller."""
        ...


#: Bytes read at a time when a file is streamed into a store.
FILE_CHUNK = 1 << 20


def staging_folder(store: BlobStore) -> Path | None:
    """Where to prepare a file for :func:`adopt_file` so that ``store`` takes it without
    copying; ``None``: anywhere local will do (it is streamed)."""
    get = getattr(store, "staging_folder", None)
    return get() if callable(get) else None


async def adopt_file(store: BlobStore, path: Path, sha256: str, size: int) -> Blob:
    """Store the complete local file ``path`` as content and remove the file: by the
    store's ``adopt`` when it has one, otherwise streamed through its writer (and checked
    against ``sha256``). On an error the file is left to the caller."""
    check_sha256(sha256)
    adopt = getattr(store, "adopt", None)
    if callable(adopt):
        return await adopt(path, sha256, size)
    return await stream_file(store, path, sha256, size)


async def stream_file(store: BlobStore, path: Path, sha256: str, size: int) -> Blob:
    """:func:`adopt_file` for a store that cannot take a file whole: the file's bytes go
    through :meth:`BlobStore.writer` (hashed again there; a different hash or size is an
    error), then the file is removed."""
    handle = await asyncio.to_thread(open, path, "rb")
    writer = await store.writer()
    try:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
            await writer.write(chunk)
        blob = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    finally:
        await asyncio.to_thread(handle.close)
    if blob != Blob(sha256, size):
        raise BlobError(
            f"the file {path} changed while it waited to be stored (it has {blob.size} "
            f"bytes with SHA-256 {blob.sha256[:12]}, not {size} bytes with {sha256[:12]})"
        )
    with contextlib.suppress(FileNotFoundError):
        await asyncio.to_thread(path.unlink)
    return blob


class StagedFile:
    """A :class:`BlobWriter` for content already complete in a local file: ``commit``
    hands the file to the store (:func:`adopt_file`); ``abort`` leaves the file to its
    owner. For code that records content through a writer."""

    def __init__(self, store: BlobStore, path: Path, sha256: str, size: int) -> None:
        self.store = store
        self.path = path
        self.sha256 = sha256
        self.size = size

    async def write(self, chunk: bytes) -> None:
        raise BlobError("a staged file is complete: nothing more can be written to it")

    async def commit(self) -> Blob:
        return await adopt_file(self.store, self.path, self.sha256, self.size)

    async def abort(self) -> None:
        return None


BlobOpener = Callable[[str], BlobStore]
# what a store must have (BlobStore's methods), checked when a plugin's opener gives one
BLOB_STORE_METHODS = (
    "writer",
    "read",
    "head",
    "exists",
    "delete",
    "sweep_partial",
    "hashes",
    "close",
)
