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
ends; a session not continued for ``UPLOAD_KEEP_SECONDS`` is removed at the next
creation of one. Only the person who started an upload can see or continue it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import Conflict, DriveError, NotFound, QuotaExceeded
from ..http_common import authenticated, etag, folder_of, json_body, plugin_of, required
from ..names import split_path

#: Read and write in pieces of this size (memory stays flat whatever the size).
CHUNK = 1 << 20
#: An upload session not continued for this long is removed.
UPLOAD_KEEP_SECONDS = 24 * 3600
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
#: One request at a time per upload session.
_LOCKS: dict[str, asyncio.Lock] = {}


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


def _remove_stale(root: Path) -> None:
    cutoff = time.time() - UPLOAD_KEEP_SECONDS
    for meta_path in root.glob("*.json"):
        part = meta_path.with_suffix(".part")
        newest = max((p.stat().st_mtime for p in (meta_path, part) if p.exists()), default=0)
        if newest < cutoff:
            part.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)


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
    await asyncio.to_thread(_remove_stale, root)
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
    async with _lock(meta["id"]):  # a piece being received ends first (or was cut off)
        return web.json_response(_describe(meta, part.stat().st_size))


@authenticated
async def give_up(request: web.Request, user: str) -> web.Response:
    meta, meta_path, part = _load(request, user)
    async with _lock(meta["id"]):
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    return web.json_response({"id": meta["id"], "given_up": True})


def _lock(upload_id: str) -> asyncio.Lock:
    return _LOCKS.setdefault(upload_id, asyncio.Lock())


@authenticated
async def append(request: web.Request, user: str) -> web.Response:
    """Keep the next bytes. Whatever arrived before a cut-off is kept (flushed to stable
    storage), so the client goes on from there."""
    meta, meta_path, part = _load(request, user)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise DriveError("send Upload-Offset: the byte the piece starts at") from None
    async with _lock(meta["id"]):
        kept = part.stat().st_size
        if offset != kept:
            raise Conflict(
                f"this upload has {kept} bytes kept; send the piece that starts there "
                f"(Upload-Offset: {kept})",
                headers={"Upload-Offset": str(kept)},
            )
        size = meta["size"]
        handle = await asyncio.to_thread(open, part, "ab")
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                if kept + len(chunk) > size:
                    raise DriveError(
                        f"this piece goes past the file's announced size ({size} bytes)"
                    )
                await asyncio.to_thread(handle.write, chunk)
                kept += len(chunk)
        finally:
            await asyncio.to_thread(_sync_and_close, handle)
        if kept < size:
            return web.json_response(_describe(meta, kept))
        plugin = plugin_of(request)
        folder = await plugin.drive.access.folder(meta["folder"])
        try:
            node, _ = await plugin.drive.upload(
                user,
                folder,
                meta["path"],
                _read(part),
                declared_size=size,
                mime=meta["mime"],
            )
        except DriveError:
            # Refused (quota, the copyright rule, a viewer now): nothing more can come of
            # these bytes, so they go; the answer says why.
            part.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            raise
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    _LOCKS.pop(meta["id"], None)
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


async def _read(part: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, part, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()
