"""Resumable uploads: an upload session takes a large file in pieces, keeps every piece
it was given on disk (flushed to stable storage before it answers), and says from which
byte to go on after a cut-off; once the last byte is there, the file is stored as any
upload is (quota, the copyright rule, versions).

- ``POST .../folders/{folder}/uploads`` ``{"path", "size", "mime"?}`` → 201 ``{"id",
  "offset": 0, ...}``
- ``GET .../uploads/{id}`` → where it is (``offset``: the bytes kept so far)
- ``PATCH .../uploads/{id}`` with ``Upload-Offset: N`` and the next bytes → ``{"offset"}``;
  with the last byte, the stored file (``"done": true``, ``"node"``). A piece that does
  not start at the kept offset is refused (409) with the offset to go on from.
- ``DELETE .../uploads/{id}`` gives up (the kept bytes are removed).

The pieces live under ``<data_dir>/drive-uploads/`` on the bridge host until the upload
ends; a session not continued for ``UPLOAD_KEEP_SECONDS`` is removed when the next one
starts. Only the person who started an upload can see or continue it.

While the bridge runs, the bytes also go straight on into the drive's store as they
arrive (a :class:`LiveUpload`), so the last piece ends the upload without reading the
whole file again; after a restart, the kept bytes are read back once and the upload goes
on from there."""

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
    from ..model import Node
    from ..service import Drive

#: Read and write in pieces of this size (memory stays flat whatever the size).
CHUNK = 1 << 20
#: An upload session not continued for this long is removed.
UPLOAD_KEEP_SECONDS = 24 * 3600
#: Chunks waiting between a piece's request and the store (memory bound per upload).
QUEUE_CHUNKS = 4
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_END = b""


@dataclass
class LiveUpload:
    """The drive upload a session feeds while this bridge process runs: ``fed`` bytes
    have gone into ``queue`` (``_END`` ends it), ``task`` stores them."""

    task: asyncio.Task[Node]
    queue: asyncio.Queue[bytes]
    fed: int

    async def feed(self, chunk: bytes) -> None:
        if self.task.done():
            self.task.result()  # its error (quota, storage), or it ended too early
            raise DriveError("the upload ended before its last byte")
        put = asyncio.ensure_future(self.queue.put(chunk))
        done, _ = await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self.task.result()
        self.fed += len(chunk)

    def cancel(self) -> None:
        self.task.cancel()


@dataclass
class UploadSessions:
    """The upload sessions of this bridge: their files, one lock each, live uploads."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    live: dict[str, LiveUpload] = field(default_factory=dict)

    def lock(self, upload_id: str) -> asyncio.Lock:
        return self.locks.setdefault(upload_id, asyncio.Lock())

    def forget(self, upload_id: str) -> None:
        live = self.live.pop(upload_id, None)
        if live is not None:
            live.cancel()
        self.locks.pop(upload_id, None)

    def remove_stale(self, root: Path) -> None:
        cutoff = time.time() - UPLOAD_KEEP_SECONDS
        for meta_path in root.glob("*.json"):
            part = meta_path.with_suffix(".part")
            times = [p.stat().st_mtime for p in (meta_path, part) if p.exists()]
            if max(times, default=0) < cutoff:
                self.forget(meta_path.stem)
                part.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)

    def live_upload(
        self, drive: Drive, user: str, folder: Any, meta: dict[str, Any], part: Path, kept: int
    ) -> LiveUpload:
        """The live upload fed up to ``kept`` bytes: this process's own, or a new one
        that first reads back what was kept (after a restart)."""
        live = self.live.get(meta["id"])
        if live is not None and live.fed == kept and not live.task.done():
            return live
        if live is not None:
            live.cancel()
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_CHUNKS)

        async def store() -> Node:
            node, _ = await drive.upload(
                user,
                folder,
                meta["path"],
                _chunks(part, kept, queue),
                declared_size=meta["size"],
                mime=meta["mime"],
            )
            return node

        live = LiveUpload(asyncio.create_task(store()), queue, kept)
        self.live[meta["id"]] = live
        return live


SESSIONS_KEY: web.AppKey[UploadSessions] = web.AppKey("drive_upload_sessions")


def sessions_of(request: web.Request) -> UploadSessions:
    return request.app[SESSIONS_KEY]


def _folder(request: web.Request) -> Path:
    root = plugin_of(request).bridge.info.data_dir / "drive-uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _paths(request: web.Request, upload_id: str) -> tuple[Path, Path]:
    if not upload_id or set(upload_id) - _ID_CHARS:
        raise NotFound("no such upload")
    root = _folder(request)
    return root / f"{upload_id}.json", root / f"{upload_id}.part"


def _load(request: web.Request, user: str) -> tuple[dict[str, Any], Path, Path]:
    upload_id = request.match_info["upload"]
    meta_path, part = _paths(request, upload_id)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise NotFound(f"no upload {upload_id} (it ended, or was given up)") from None
    if meta.get("user") != user:
        raise NotFound(f"no upload {upload_id} (it ended, or was given up)")
    return meta, meta_path, part


def _describe(meta: dict[str, Any], offset: int) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "folder": meta["folder"],
        "path": meta["path"],
        "size": meta["size"],
        "offset": offset,
    }


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
    sessions_of(request).remove_stale(root)
    upload_id = secrets.token_urlsafe(18)
    meta = {
        "id": upload_id,
        "user": user,
        "folder": folder.id,
        "path": "/".join(parts),
        "size": size,
        "mime": body.get("mime") if isinstance(body.get("mime"), str) else None,
        "created": time.time(),
    }
    meta_path, part = _paths(request, upload_id)
    part.touch()
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    return web.json_response(_describe(meta, 0), status=201)


@authenticated
async def status(request: web.Request, user: str) -> web.Response:
    meta, _, part = _load(request, user)
    async with sessions_of(request).lock(meta["id"]):  # a piece being received ends first
        return web.json_response(_describe(meta, part.stat().st_size))


@authenticated
async def give_up(request: web.Request, user: str) -> web.Response:
    sessions = sessions_of(request)
    meta, meta_path, part = _load(request, user)
    async with sessions.lock(meta["id"]):
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    sessions.forget(meta["id"])
    return web.json_response({"id": meta["id"], "given_up": True})


@authenticated
async def append(request: web.Request, user: str) -> web.Response:
    """Keep the next bytes. Whatever arrived before a cut-off is kept (flushed to stable
    storage), so the client goes on from there."""
    sessions = sessions_of(request)
    meta, meta_path, part = _load(request, user)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise DriveError("send Upload-Offset: the byte the piece starts at") from None
    async with sessions.lock(meta["id"]):
        kept = part.stat().st_size
        if offset != kept:
            raise Conflict(
                f"this upload has {kept} bytes kept; send the piece that starts there "
                f"(Upload-Offset: {kept})",
                headers={"Upload-Offset": str(kept)},
            )
        size = meta["size"]
        drive = plugin_of(request).drive
        folder = await drive.access.folder(meta["folder"])
        try:
            live = sessions.live_upload(drive, user, folder, meta, part, kept)
            handle = await asyncio.to_thread(open, part, "ab")
            try:
                async for chunk in request.content.iter_chunked(CHUNK):
                    if kept + len(chunk) > size:
                        raise DriveError(
                            f"this piece goes past the file's announced size ({size} bytes)"
                        )
                    await asyncio.to_thread(handle.write, chunk)
                    kept += len(chunk)
                    await live.feed(chunk)
            finally:
                await asyncio.to_thread(_sync_and_close, handle)
            if kept < size:
                return web.json_response(_describe(meta, kept))
            await live.feed(_END)
            node = await live.task
        except DriveError:
            # Refused (quota, the copyright rule, a viewer now): nothing more can come of
            # these bytes, so they go; the answer says why.
            part.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            sessions.forget(meta["id"])
            raise
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    sessions.forget(meta["id"])
    return web.json_response(
        {**_describe(meta, size), "done": True, "node": node.as_json(meta["path"])},
        headers={"ETag": etag(node)},
    )


def _sync_and_close(handle: Any) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


async def _chunks(part: Path, kept: int, queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    """The first ``kept`` bytes from the file, then what the pieces bring, to the end."""
    if kept:
        handle = await asyncio.to_thread(open, part, "rb")
        try:
            left = kept
            while left and (chunk := await asyncio.to_thread(handle.read, min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()
    while (chunk := await queue.get()) != _END:
        yield chunk


def add_routes(app: web.Application, prefix: str, folder: str) -> None:
    app[SESSIONS_KEY] = UploadSessions()
    app.router.add_post(f"{folder}/uploads", start)
    upload = f"{prefix}/uploads/{{upload}}"
    app.router.add_get(upload, status)
    app.router.add_patch(upload, append)
    app.router.add_delete(upload, give_up)
