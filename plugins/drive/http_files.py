"""HTTP routes for what is inside a folder: list, upload (streamed), download (Range),
mkdir, move, delete, versions, trash, and the change feed for sync clients."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from .errors import Denied, DriveError, LinkGone, NotFound
from .http_common import (
    STARTED_KEY,
    authenticated,
    file_tag,
    folder_of,
    json_body,
    node_response,
    not_modified,
    parse_range,
    plugin_of,
    preconditions,
    required,
    write_revision,
)
from .model import Node
from .names import split_path
from .preconditions import EntityTag, Outcome, header_list, range_applies
from .service import Drive

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
    """PUT a file's content, streamed: memory stays flat whatever the size. If-Match and
    If-None-Match are checked before the body is read, and again when it is stored."""
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    parts = split_path(request.match_info["path"])
    path = "/".join(parts)
    await drive.access.require(folder, user, write=True)
    parent = await drive.tree.lookup(folder, parts[:-1])
    if not parent.is_dir:
        raise DriveError(f"{parent.name} is a file, not a folder")
    current = await drive.tree.child(parent.id, parts[-1])
    verdict = preconditions(request, file_tag(current) if current else None, path)
    if_none_match = header_list(request.headers, "If-None-Match")
    node, added = await drive.upload(
        user,
        folder,
        path,
        request.content.iter_chunked(UPLOAD_CHUNK),
        declared_size=request.content_length,
        mime=request.headers.get("Content-Type") or None,
        if_match=write_revision(verdict),
        create_only=if_none_match is not None and if_none_match.any,
    )
    return node_response(node, path, status=201 if added else 200)


async def _send_content(
    request: web.Request, node: Node, what: str, tag: EntityTag | None = None
) -> web.StreamResponse:
    """The file's content (HEAD: only its headers), with conditional requests (If-Match,
    If-None-Match, If-Range) and a single Range."""
    drive = plugin_of(request).drive
    if node.is_dir:
        raise DriveError(f"{node.name} is a folder; list it instead")
    tag = tag or file_tag(node)
    if preconditions(request, tag, what).outcome is Outcome.NOT_MODIFIED:
        return not_modified(str(tag))
    wanted = None
    if range_applies(request.headers.get("If-Range"), tag):
        wanted = parse_range(request.headers.get("Range"), node.size)
    start, end = wanted or (0, node.size)
    response = web.StreamResponse(status=206 if wanted else 200)
    response.headers.update(
        {
            "Content-Type": node.mime or "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": str(tag),
            "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(node.name)}",
        }
    )
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{node.size}"
    response.content_length = end - start
    await response.prepare(request)
    request[STARTED_KEY] = True
    if request.method != "HEAD":
        async for chunk in drive.content(node, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


async def _require_live(drive: Drive, node: Node) -> None:
    """:class:`NotFound` when the file, or a folder above it, is in the trash."""
    at = node
    while True:
        if at.trashed_at is not None:
            where = "" if at.id == node.id else f" (its folder {at.name} is)"
            raise NotFound(f"{node.name} is in the trash{where}")
        if at.parent_id is None:
            return
        at = await drive.tree.node(at.parent_id)


@authenticated
async def download(request: web.Request, user: str) -> web.StreamResponse:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, path = await drive.resolve(user, folder, request.match_info["path"])
    return await _send_content(request, node, path)


@authenticated
async def download_node(request: web.Request, user: str) -> web.StreamResponse:
    """A file by its id (the links the bot posts for files too large for the chat)."""
    drive = plugin_of(request).drive
    node = await drive.tree.node(request.match_info["node"])
    folder = await drive.access.folder(node.folder_id)
    await drive.access.require(folder, user)
    await _require_live(drive, node)
    return await _send_content(request, node, node.name)


@authenticated
async def download_shared(request: web.Request, user: str) -> web.StreamResponse:
    """A file shared into a room as a link (too large for the homeserver): the version
    that was shared, for the room's members only, while the file is out of the trash and
    the person who shared it still has access to its folder."""
    plugin = plugin_of(request)
    drive = plugin.drive
    room, node_id = request.match_info["room"], request.match_info["node"]
    sharer = request.match_info["sharer"]
    version = int(request.match_info["version"])
    if not plugin.rooms.link_is_valid(room, node_id, version, sharer, request.match_info["sig"]):
        raise NotFound("this link is not valid")
    if not await plugin.rooms.is_joined(room, user):
        raise Denied("this file was shared in a room you are not in")
    node = await drive.tree.node(node_id)
    try:
        await drive.access.require(await drive.access.folder(node.folder_id), sharer)
    except Denied as exc:
        raise LinkGone(
            f"{sharer}, who shared this link, no longer has access to the folder it is in, so "
            "the link no longer works: ask someone who has to share the file again"
        ) from exc
    try:
        await _require_live(drive, node)
    except NotFound as exc:
        raise LinkGone(f"{exc.message}, so this link no longer works") from exc
    match = [v for v in await drive.tree.versions(node) if v.number == version]
    if not match:
        raise NotFound("that version of the file is gone")
    shared = dataclasses.replace(node, sha256=match[0].sha256, size=match[0].size)
    # The shared version never changes: its own tag, whatever the file is at now.
    return await _send_content(request, shared, node.name, EntityTag(f"v{version}"))


@authenticated
async def old_shared_link(request: web.Request, user: str) -> web.StreamResponse:
    """Links posted before links named who shared them cannot be checked against the
    share: they are refused, saying what to do."""
    raise LinkGone(
        "this link was made by an older version of the bridge and cannot be checked "
        "against the file's sharing; ask for the file to be shared again (!drive share)"
    )


@authenticated
async def delete(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    node, path = await drive.resolve(user, folder, request.match_info["path"], write=True)
    verdict = preconditions(request, file_tag(node), path)
    trashed = await drive.tree.trash(folder, node, user, write_revision(verdict))
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
    node, source = await drive.resolve(user, folder, required(body, "from"), write=True)
    verdict = preconditions(request, file_tag(node), source, body.get("if_match"))
    parts = split_path(required(body, "to"))
    if body.get("to_folder") not in (None, folder.id):  # into another shared folder
        target = await drive.access.folder(str(body["to_folder"]))
        parent = await drive.tree.lookup(target, parts[:-1])
        moved = await drive.move_to_folder(user, folder, node, target, parent, parts[-1])
        return node_response(moved, "/".join(parts))
    parent = await drive.tree.lookup(folder, parts[:-1])
    moved = await drive.tree.move(folder, node, parent, parts[-1], user, write_revision(verdict))
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
    restored = await drive.restore(user, folder, node)  # the copyright rule applies
    return node_response(restored, await drive.tree.path_of(restored))


@authenticated
async def quota(request: web.Request, user: str) -> web.Response:
    used = await plugin_of(request).drive.quota(user)
    return web.json_response({"used": used.used, "limit": used.limit, "free": used.free})
