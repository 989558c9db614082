"""HTTP routes for what is inside a folder: list, upload (streamed), download (Range),
mkdir, move, delete, versions, trash, and the change feed for sync clients."""

from __future__ import annotations

import dataclasses
import hmac

from aiohttp import web

from .errors import Denied, DriveError, NotFound
from .http_common import (
    authenticated,
    etag,
    folder_of,
    if_match,
    json_body,
    node_response,
    parse_range,
    plugin_of,
    required,
)
from .model import Node
from .names import split_path

UPLOAD_CHUNK = 1 << 20


@authenticated
async def list_folder(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, path = await drive.resolve(user, folder, request.query.get("path", ""))
    prefix = f"{path}/" if path else ""
    entries = [n.as_json(prefix + n.name) for n in await drive.tree.children(node)]
    return web.json_response({"path": path, "node": node.as_json(path), "entries": entries})


@authenticated
async def tree(request: web.Request, user: str) -> web.Response:
    """Every live file and folder with its path, and the change-feed cursor they match."""
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    await drive.access.require(folder, user)
    cursor = await drive.tree.cursor(folder)
    nodes = [node.as_json(path) for path, node in await drive.tree.walk(folder)]
    return web.json_response({"cursor": cursor, "nodes": nodes})


@authenticated
async def changes(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    await drive.access.require(folder, user)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError as exc:
        raise DriveError("since must be a cursor number from an earlier answer") from exc
    found = await drive.tree.changes(folder, since)
    items = []
    for seq, node_id, node in found:
        if node is None:  # emptied from the trash: gone for good
            items.append({"seq": seq, "id": node_id, "purged": True})
            continue
        path = await drive.tree.path_of(node)
        items.append({"seq": seq, **node.as_json(path)})
    cursor = found[-1][0] if found else since
    return web.json_response({"cursor": cursor, "changes": items})


@authenticated
async def upload(request: web.Request, user: str) -> web.Response:
    """PUT a file's content, streamed: memory stays flat whatever the size."""
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    path = request.match_info["path"]
    create_only = request.headers.get("If-None-Match", "").strip() == "*"
    node, added = await drive.upload(
        user,
        folder,
        path,
        request.content.iter_chunked(UPLOAD_CHUNK),
        declared_size=request.content_length,
        mime=request.headers.get("Content-Type") or None,
        if_match=if_match(request),
        create_only=create_only,
    )
    return node_response(node, "/".join(split_path(path)), status=201 if added else 200)


async def _send_content(request: web.Request, node: Node) -> web.StreamResponse:
    drive = plugin_of(request).drive
    if node.is_dir:
        raise DriveError(f"{node.name} is a folder; list it instead")
    wanted = parse_range(request.headers.get("Range"), node.size)
    start, end = wanted or (0, node.size)
    response = web.StreamResponse(status=206 if wanted else 200)
    response.headers.update(
        {
            "Content-Type": node.mime or "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": etag(node),
            "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(node.name)}",
        }
    )
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{node.size}"
    response.content_length = end - start
    await response.prepare(request)
    async for chunk in drive.content(node, start, end):
        await response.write(chunk)
    await response.write_eof()
    return response


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@authenticated
async def download(request: web.Request, user: str) -> web.StreamResponse:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, _ = await drive.resolve(user, folder, request.match_info["path"])
    return await _send_content(request, node)


@authenticated
async def download_node(request: web.Request, user: str) -> web.StreamResponse:
    """A file by its id (the links the bot posts for files too large for the chat)."""
    drive = plugin_of(request).drive
    node = await drive.tree.node(request.match_info["node"])
    folder = await drive.access.folder(node.folder_id)
    await drive.access.require(folder, user)
    if node.trashed_at is not None:
        raise NotFound(f"{node.name} is in the trash")
    return await _send_content(request, node)


@authenticated
async def download_shared(request: web.Request, user: str) -> web.StreamResponse:
    """A file shared into a room as a link (too large for the homeserver): the version
    that was shared, for the room's members only."""
    plugin = plugin_of(request)
    room, node_id = request.match_info["room"], request.match_info["node"]
    version = int(request.match_info["version"])
    expected = plugin.rooms.link_signature(room, node_id, version)
    if not hmac.compare_digest(expected, request.match_info["sig"]):
        raise NotFound("this link is not valid")
    if not await plugin.rooms.is_joined(room, user):
        raise Denied("this file was shared in a room you are not in")
    node = await plugin.drive.tree.node(node_id)
    match = [v for v in await plugin.drive.tree.versions(node) if v.number == version]
    if not match:
        raise NotFound("that version of the file is gone")
    shared = dataclasses.replace(node, sha256=match[0].sha256, size=match[0].size)
    return await _send_content(request, shared)


@authenticated
async def delete(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, path = await drive.resolve(user, folder, request.match_info["path"], write=True)
    trashed = await drive.tree.trash(folder, node, user, if_match(request))
    return node_response(trashed, path)


@authenticated
async def mkdir(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    body = await json_body(request)
    parts = split_path(required(body, "path"))
    await drive.access.require(folder, user, write=True)
    node = await drive.tree.mkdir(folder, parts, user)
    return node_response(node, "/".join(parts), status=201)


@authenticated
async def move(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    body = await json_body(request)
    node, _ = await drive.resolve(user, folder, required(body, "from"), write=True)
    parts = split_path(required(body, "to"))
    if body.get("to_folder") not in (None, folder.id):  # into another shared folder
        target = await drive.access.folder(str(body["to_folder"]))
        parent = await drive.tree.lookup(target, parts[:-1])
        moved = await drive.move_to_folder(user, folder, node, target, parent, parts[-1])
        return node_response(moved, "/".join(parts))
    parent = await drive.tree.lookup(folder, parts[:-1])
    moved = await drive.tree.move(folder, node, parent, parts[-1], user, if_match(request, body))
    return node_response(moved, "/".join(parts))


@authenticated
async def versions(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, path = await drive.resolve(user, folder, request.query.get("path", ""))
    items = [
        {
            "version": v.number,
            "sha256": v.sha256,
            "size": v.size,
            "mime": v.mime,
            "author": v.author,
            "created_at": v.created_at,
        }
        for v in await drive.tree.versions(node)
    ]
    return web.json_response({"path": path, "current": node.version_no, "versions": items})


@authenticated
async def revert(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    body = await json_body(request)
    path = required(body, "path")
    node = await drive.revert(user, folder, path, required(body, "version", int))
    return node_response(node, "/".join(split_path(path)))


@authenticated
async def trash(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    await drive.access.require(folder, user)
    items = [n.as_json(await drive.tree.path_of(n)) for n in await drive.tree.trashed(folder)]
    return web.json_response({"trash": items})


@authenticated
async def empty_trash(request: web.Request, user: str) -> web.Response:
    """Delete what is in the trash for good (the folder's owner only)."""
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    count, freed = await drive.empty_trash(user, folder)
    return web.json_response({"purged": count, "freed_bytes": freed})


@authenticated
async def restore(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    await drive.access.require(folder, user, write=True)
    body = await json_body(request)
    node = await drive.tree.node(required(body, "node_id"))
    if node.folder_id != folder.id:
        raise NotFound("that item is not in this folder's trash")
    restored = await drive.tree.restore(folder, node, user)
    return node_response(restored, await drive.tree.path_of(restored))


@authenticated
async def quota(request: web.Request, user: str) -> web.Response:
    used = await plugin_of(request).drive.quota(user)
    return web.json_response({"used": used.used, "limit": used.limit, "free": used.free})
