"""The drive's file content on several filesystems at once (say, two disks): an example
storage backend for Anywhere, in its own package (docs/drive.md, "Storage backends").

    plugins:
      enabled: [basics, drive, mirror_store]
      settings:
        drive:
          storage_url: "mirror://"
        mirror_store:
          copies: ["osfs:///srv/disk1/drive", "osfs:///mnt/disk2/drive"]

Every upload is written to each copy and acknowledged only once all of them have it;
reads come from the first copy that has the content, so the drive keeps serving files
while one copy is missing some.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from anywhere.bridge import ConfigError, ConfigSection, hookimpl
from anywhere.storage.blobs import (
    Blob,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobWriter,
)
from anywhere.storage.stores import open_blob_store

SCHEME = "mirror"


class MirrorWriter:
    """One content written to every copy at once."""

    def __init__(self, writers: list[BlobWriter]) -> None:
        self.writers = writers
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        try:
            for writer in self.writers:
                await writer.write(chunk)
        except BaseException:  # over the size limit, a full disk: no copy keeps it
            await self.abort()
            raise
        self.size += len(chunk)

    async def commit(self) -> Blob:
        blobs = []
        try:
            for writer in self.writers:
                blobs.append(await writer.commit())
        except BaseException:
            await self.abort()
            raise
        if len(set(blobs)) != 1:
            raise BlobError(f"the copies stored different content: {blobs}")
        return blobs[0]

    async def abort(self) -> None:
        for writer in self.writers:
            await writer.abort()


class MirrorStore:
    """A :class:`anywhere.storage.blobs.BlobStore` over several others."""

    def __init__(self, url: str, copies: list[BlobStore]) -> None:
        self.url = url
        self.copies = copies

    async def writer(self, max_size: int | None = None) -> MirrorWriter:
        return MirrorWriter([await copy.writer(max_size) for copy in self.copies])

    async def _holder(self, sha256: str) -> BlobStore:
        for copy in self.copies:
            if await copy.exists(sha256):
                return copy
        raise BlobNotFound(f"the content {sha256[:12]} is missing from every copy")

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        holder = await self._holder(sha256)
        async for chunk in holder.read(sha256, start, end, chunk_size):
            yield chunk

    async def head(self, sha256: str, length: int = 4096) -> bytes:
        return await (await self._holder(sha256)).head(sha256, length)

    async def exists(self, sha256: str) -> bool:
        return any([await copy.exists(sha256) for copy in self.copies])

    async def delete(self, sha256: str) -> None:
        for copy in self.copies:
            await copy.delete(sha256)

    async def sweep_partial(self) -> int:
        return sum([await copy.sweep_partial() for copy in self.copies])

    async def hashes(self) -> list[str]:
        return sorted({sha for copy in self.copies for sha in await copy.hashes()})

    async def close(self) -> None:
        for copy in self.copies:
            await copy.close()


def open_mirror(url: str, copies: list[str]) -> MirrorStore:
    if url.rstrip("/") != f"{SCHEME}:":
        raise BlobError(
            f"{url!r}: write the storage URL as just {SCHEME}:// and list the copies in "
            "plugins.settings.mirror_store.copies"
        )
    return MirrorStore(url, [open_blob_store(copy) for copy in copies])


def validate(section: dict, prefix: str) -> None:
    copies = section["copies"]
    if not isinstance(copies, list) or len(copies) < 2:
        raise ConfigError(f"{prefix}.copies", "two or more filesystem URLs", copies)
    for copy in copies:
        if not isinstance(copy, str) or "://" not in copy or copy.startswith(f"{SCHEME}:"):
            raise ConfigError(
                f"{prefix}.copies", "filesystem URLs such as osfs:///srv/disk1/drive", copy
            )


class MirrorPlugin:
    anywhere_contract = "1.0"  # anywhere.bridge.api: the services and hooks used here

    @hookimpl
    def anywhere_config_section(self):
        return ConfigSection({"copies": []}, validate)

    @hookimpl
    def anywhere_drive_blob_stores(self, bridge):
        copies = bridge.settings("mirror_store")["copies"]
        return {SCHEME: lambda url: open_mirror(url, copies)}


plugin = MirrorPlugin()
