"""Resumable uploads: an upload session takes a large file in pieces, keeps every piece
it was given on disk (flushed to stable storage before it answers), and says what it
kept after a cut-off; once every byte is there, the file is stored as any upload is
(quota, the copyright rule, versions).

- ``POST .../folders/{folder}/uploads`` ``{"path", "size", "mime"?}`` → 201 ``{"id",
  "offset": 0, "kept": [], ...}``
- ``GET .../uploads/{id}`` → what is kept: ``kept``, the ranges ``[start, end)``, and
  ``offset``, the end of the first one (the bytes kept from the start)
- ``PATCH .../uploads/{id}`` with ``Upload-Offset: N``, ``Content-Length`` and the bytes
  from N → ``{"offset", "kept"}``; once every byte is kept, the stored file (``"done":
  true``, ``"node"``). Pieces may come at the same time on several connections, in any
  order; a piece that overlaps what is kept or arriving is refused (409, with
  ``Upload-Offset`` the first byte missing).
- ``DELETE .../uploads/{id}`` gives up (the kept bytes are removed).

Each piece is a file ``<data_dir>/drive-uploads/<id>.<start>.part`` until the upload
ends (a piece continued at its end grows its file); a session not continued for
``UPLOAD_KEEP_SECONDS`` is removed when the next one starts. Only the person who started
an upload can see or continue it.

While the bridge runs, one task per upload reads the pieces in order as they arrive and
hands them on into the drive's store, so the last piece ends the upload without reading
the whole file again; after a restart, it reads back what was kept first."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import Conflict, DriveError, NotFound, QuotaExceeded
from ..http_common import authenticated, etag, folder_of, json_body, plugin_of, required
from ..names import split_path

if TYPE_CHECKING:
    from ..model import Folder, Node
    from ..service import Drive

#: Read and write in pieces of this size (memory stays flat whatever the size).
CHUNK = 1 << 20
#: An upload session not continued for this long is removed.
UPLOAD_KEEP_SECONDS = 24 * 3600
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class Upload:
    """One upload session: its pieces on disk, the pieces arriving now, and the task that
    stores the bytes in order (started by the first piece this process receives)."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.id: str = meta["id"]
        self.size: int = meta["size"]
        #: start → bytes in its file so far, and where it will end, for the pieces
        #: arriving now
        self.arriving: dict[int, int] = {}
        self.planned: dict[int, int] = {}
        self.changed = asyncio.Condition()
        self.store: asyncio.Task[Node] | None = None

    def piece_path(self, start: int) -> Path:
        return self.root / f"{self.id}.{start}.part"

    def pieces(self) -> dict[int, int]:
        """start → bytes, of every piece (those arriving: what they wrote so far)."""
        found = {}
        for path in self.root.glob(f"{self.id}.*.part"):
            found[int(path.name.split(".")[1])] = path.stat().st_size
        found |= self.arriving  # a piece begun may have no file yet
        return dict(sorted(found.items()))

    def kept(self) -> list[list[int]]:
        """The ranges ``[start, end)`` kept (pieces next to each other joined)."""
        ranges: list[list[int]] = []
        for start, length in self.pieces().items():
            if not length:
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = start + length
            else:
                ranges.append([start, start + length])
        return ranges

    def first_missing(self) -> int:
        kept = self.kept()
        return kept[0][1] if kept and kept[0][0] == 0 else 0

    def complete(self) -> bool:
        if self.arriving:
            return False
        return self.size == 0 or self.kept() == [[0, self.size]]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "folder": self.meta["folder"],
            "path": self.meta["path"],
            "size": self.size,
            "offset": self.first_missing(),
            "kept": self.kept(),
        }

    def begin_piece(self, offset: int, length: int) -> int:
        """Where a piece ``[offset, offset + length)`` goes (the start of its file: a
        piece that ends at ``offset`` grows); :class:`Conflict` when it overlaps what is
        kept or arriving."""
        end = offset + length
        if offset < 0 or end > self.size:
            raise DriveError(
                f"the piece [{offset}, {end}) is outside the file's announced size "
                f"({self.size} bytes)"
            )
        start = offset
        for piece_start, piece_length in self.pieces().items():
            arriving = self.planned.get(piece_start)
            piece_end = arriving if arriving is not None else piece_start + piece_length
            if arriving is None and piece_length and piece_end == offset:
                start = piece_start  # continue that piece's file
            elif piece_start < end and offset < piece_end:
                raise Conflict(
                    f"this upload already has bytes from {piece_start} to {piece_end} (it "
                    f"keeps {self.kept()}); send a piece of what is missing, such as "
                    f"Upload-Offset: {self.first_missing()}",
                    headers={"Upload-Offset": str(self.first_missing())},
                )
        self.planned[start] = end
        self.arriving[start] = offset - start
        return start

    async def wrote(self, start: int, length: int) -> None:
        async with self.changed:
            self.arriving[start] = length
            self.changed.notify_all()

    async def end_piece(self, start: int) -> None:
        async with self.changed:
            self.arriving.pop(start, None)
            self.planned.pop(start, None)
            self.changed.notify_all()

    async def settled(self) -> None:
        """Until no piece is arriving (a piece cut off ends first)."""
        async with self.changed:
            await self.changed.wait_for(lambda: not self.arriving)

    def start_storing(self, drive: Drive, user: str, folder: Folder) -> asyncio.Task[Node]:
        if self.store is None or (self.store.done() and self.store.exception() is not None):
            self.store = asyncio.create_task(self._store(drive, user, folder))
        return self.store

    async def _store(self, drive: Drive, user: str, folder: Folder) -> Node:
        node, _ = await drive.upload(
            user,
            folder,
            self.meta["path"],
            self._in_order(),
            declared_size=self.size,
            mime=self.meta["mime"],
        )
        return node

    async def _in_order(self) -> AsyncIterator[bytes]:
        """The file's bytes from the start, read from the pieces as they arrive."""
        position = 0
        while position < self.size:
            async with self.changed:
                found = await self.changed.wait_for(lambda at=position: self._covering(at))
            start, available = found
            handle = await asyncio.to_thread(open, self.piece_path(start), "rb")
            try:
                handle.seek(position - start)
                while position < start + available:
                    want = min(CHUNK, start + available - position)
                    chunk = await asyncio.to_thread(handle.read, want)
                    if not chunk:
                        break
                    position += len(chunk)
                    yield chunk
            finally:
                handle.close()

    def _covering(self, position: int) -> tuple[int, int] | None:
        for start, length in self.pieces().items():
            if start <= position < start + length:
                return start, length
        return None

    def remove(self) -> None:
        for path in self.root.glob(f"{self.id}.*"):
            path.unlink(missing_ok=True)


@dataclass
class UploadSessions:
    """The upload sessions this bridge process has seen (read from disk on first use)."""

    uploads: dict[str, Upload] = field(default_factory=dict)

    def get(self, root: Path, meta: dict[str, Any]) -> Upload:
        upload = self.uploads.get(meta["id"])
        if upload is None:
            upload = self.uploads[meta["id"]] = Upload(root, meta)
        return upload

    def forget(self, upload_id: str) -> None:
        upload = self.uploads.pop(upload_id, None)
        if upload is not None and upload.store is not None and not upload.store.done():
            upload.store.cancel()

    def remove_stale(self, root: Path) -> None:
        cutoff = time.time() - UPLOAD_KEEP_SECONDS
        for meta_path in root.glob("*.json"):
            upload_id = meta_path.stem
            files = list(root.glob(f"{upload_id}.*"))
            newest = max((p.stat().st_mtime for p in files if p.exists()), default=0)
            if newest < cutoff:
                self.forget(upload_id)
                for path in files:
                    path.unlink(missing_ok=True)


SESSIONS_KEY: web.AppKey[UploadSessions] = web.AppKey("drive_upload_sessions")


def sessions_of(request: web.Request) -> UploadSessions:
    return request.app[SESSIONS_KEY]


def _folder(request: web.Request) -> Path:
    root = plugin_of(request).bridge.info.data_dir / "drive-uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _load(request: web.Request, user: str) -> Upload:
    upload_id = request.match_info["upload"]
    gone = NotFound(f"no upload {upload_id} (it ended, or was given up)")
    if not upload_id or set(upload_id) - _ID_CHARS:
        raise gone
    root = _folder(request)
    try:
        meta = json.loads((root / f"{upload_id}.json").read_text())
    except (OSError, ValueError):
        raise gone from None
    if meta.get("user") != user:
        raise gone
    return sessions_of(request).get(root, meta)


@authenticated
async def start(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    folder = await folder_of(request)
    body = await json_body(request)
    parts = split_path(required(body, "path"))
    size = required(body, "size", int)
    if isinstance(size, bool) or size < 0:
        raise DriveError("'size' must be the file's size in bytes")
    await plugin.drive.access.require(folder, user, write=True)
    parent = await plugin.drive.tree.lookup(folder, parts[:-1])
    if not parent.is_dir:
        raise DriveError(f"{parent.name} is a file, not a folder")
    quota = await plugin.drive.quota(folder.owner)
    if size > quota.free:
        raise QuotaExceeded(
            f"this file ({size} bytes) does not fit in the folder owner's free quota "
            f"({quota.free} bytes): delete something and empty the trash, or ask the owner"
        )
    root = _folder(request)
    sessions = sessions_of(request)
    sessions.remove_stale(root)
    meta = {
        "id": secrets.token_urlsafe(18),
        "user": user,
        "folder": folder.id,
        "path": "/".join(parts),
        "size": size,
        "mime": body.get("mime") if isinstance(body.get("mime"), str) else None,
        "created": time.time(),
    }
    meta_path = root / f"{meta['id']}.json"
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    return web.json_response(sessions.get(root, meta).describe(), status=201)


@authenticated
async def status(request: web.Request, user: str) -> web.Response:
    upload = _load(request, user)
    await upload.settled()  # pieces being received end first (or are cut off)
    return web.json_response(upload.describe())


@authenticated
async def give_up(request: web.Request, user: str) -> web.Response:
    upload = _load(request, user)
    sessions_of(request).forget(upload.id)
    upload.remove()
    return web.json_response({"id": upload.id, "given_up": True})


@authenticated
async def append(request: web.Request, user: str) -> web.Response:
    """Keep a piece. Whatever arrived before a cut-off is kept (flushed to stable
    storage), so the client sends only what is missing."""
    upload = _load(request, user)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise DriveError("send Upload-Offset: the byte the piece starts at") from None
    if request.content_length is None:
        raise DriveError("send the piece with a Content-Length")
    drive = plugin_of(request).drive
    folder = await drive.access.folder(upload.meta["folder"])
    start = upload.begin_piece(offset, request.content_length)
    try:
        storing = upload.start_storing(drive, user, folder)
        written = offset - start
        # Unbuffered: what is written can be read at once by the storing task.
        handle = await asyncio.to_thread(open, upload.piece_path(start), "ab", buffering=0)
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
                await upload.wrote(start, written)
                if storing.done():
                    storing.result()  # its error (quota, storage)
        finally:
            await asyncio.to_thread(_sync_and_close, handle)
            await upload.end_piece(start)
        if not upload.complete():
            return web.json_response(upload.describe())
        node = await storing
    except DriveError:
        # Refused (quota, the copyright rule, a viewer now): nothing more can come of
        # these bytes, so they go; the answer says why.
        sessions_of(request).forget(upload.id)
        upload.remove()
        raise
    sessions_of(request).forget(upload.id)
    upload.remove()
    path = upload.meta["path"]
    return web.json_response(
        {**upload.describe(), "offset": upload.size, "kept": [[0, upload.size]], "done": True}
        | {"node": node.as_json(path)},
        headers={"ETag": etag(node)},
    )


def _sync_and_close(handle: Any) -> None:
    try:
        os.fsync(handle.fileno())
    finally:
        handle.close()


def add_routes(app: web.Application, prefix: str, folder: str) -> None:
    app[SESSIONS_KEY] = UploadSessions()
    app.router.add_post(f"{folder}/uploads", start)
    upload = f"{prefix}/uploads/{{upload}}"
    app.router.add_get(upload, status)
    app.router.add_patch(upload, append)
    app.router.add_delete(upload, give_up)
