"""HTTP routes for folders and shares: create, list, invite, accept, decline, revoke.

Accepting joins the folder's room and declining rejects the invite, with the person's
own access token, so the Matrix room stays the one truth about who accepted."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from anywhere.bridge.web import bearer_token

from .errors import DriveError, NotFound
from .http_common import authenticated, folder_of, json_body, plugin_of, required
from .model import Folder, Member


def folder_json(folder: Folder, member: Member | None = None) -> dict:
    data = {"id": folder.id, "name": folder.name, "owner": folder.owner, "room_id": folder.room_id}
    if member is not None:
        data |= {"role": member.role, "state": member.state}
    return data


@authenticated
async def list_folders(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    items = [folder_json(f, m) for f, m in await drive.access.folders_of(user)]
    return web.json_response({"folders": items})


@authenticated
async def create_folder(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    body = await json_body(request)
    folder = await plugin.rooms.create_folder(user, required(body, "name"))
    member = await plugin.drive.access.member(folder.id, user)
    return web.json_response(folder_json(folder, member), status=201)


@authenticated
async def members(request: web.Request, user: str) -> web.Response:
    drive = plugin_of(request).drive
    folder = await folder_of(request)
    await drive.access.require(folder, user)
    items = [
        {"user_id": m.user_id, "role": m.role, "state": m.state}
        for m in await drive.access.members(folder.id)
        if m.state in ("joined", "invited")
    ]
    return web.json_response({"members": items})


@authenticated
async def invite(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    folder = await folder_of(request)
    body = await json_body(request)
    message = await plugin.rooms.invite(
        folder, user, required(body, "user_id"), body.get("role") or "editor"
    )
    member = await plugin.drive.access.member(folder.id, body["user_id"])
    return web.json_response(
        {"user_id": member.user_id, "role": member.role, "state": member.state, "message": message}
    )


@authenticated
async def revoke(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    folder = await folder_of(request)
    message = await plugin.rooms.revoke(folder, user, request.match_info["user"])
    return web.json_response({"message": message})


async def _membership(request: web.Request, user: str, action: str) -> web.Response:
    plugin = plugin_of(request)
    folder = await folder_of(request)
    member = await plugin.drive.access.member(folder.id, user)
    if member is None or member.state != "invited":
        raise NotFound(f"you have no pending invitation to {folder.name!r}")
    homeserver = plugin.bridge.info.homeserver_url
    room = quote(folder.room_id or "", safe="")
    endpoint = "join" if action == "accept" else "leave"
    url = f"{homeserver}/_matrix/client/v3/rooms/{room}/{endpoint}"
    headers = {"Authorization": f"Bearer {bearer_token(request)}"}
    async with plugin.bridge.http.post(url, json={}, headers=headers) as resp:
        if resp.status != 200:
            raise DriveError(f"the homeserver refused to {endpoint} the room: {await resp.text()}")
    state = await plugin.drive.access.membership_changed(
        folder, user, "join" if action == "accept" else "leave"
    )
    if state == "joined" and folder.room_id:
        await plugin.bridge.bot.send_notice(
            folder.room_id, f"{user} accepted: {member.role} of {folder.name}."
        )
    current = await plugin.drive.access.member(folder.id, user)
    return web.json_response({"state": current.state, "role": current.role})


@authenticated
async def accept(request: web.Request, user: str) -> web.Response:
    return await _membership(request, user, "accept")


@authenticated
async def decline(request: web.Request, user: str) -> web.Response:
    return await _membership(request, user, "decline")
