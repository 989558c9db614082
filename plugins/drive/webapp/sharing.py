"""Sharing a file into a room from the web app: ``POST .../folders/{folder}/share``
``{"path", "room"}`` — the same checks as ``!drive share`` (the person and the bot in the
room, the copyright rule with its reason), then the file (or a link, when it is larger
than the homeserver accepts) is posted by the bot."""

from __future__ import annotations

import secrets

from aiohttp import web

from anywhere.bridge import EventContext, MatrixEvent

from ..errors import Denied, DriveError, NotFound
from ..http_common import authenticated, folder_of, json_body, plugin_of, required


@authenticated
async def share(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    drive = plugin.drive
    folder = await folder_of(request)
    body = await json_body(request)
    node, path = await drive.resolve(user, folder, required(body, "path"))
    if node.is_dir:
        raise DriveError(f"{folder.name}/{path} is a folder: share folders by inviting people")
    asked = required(body, "room").strip()
    room = asked
    if asked.startswith("#"):
        try:
            room = str((await plugin.bridge.bot.resolve_room_alias(asked)).room_id)
        except Exception as exc:
            raise NotFound(f"no room {asked} ({exc})") from exc
    elif not asked.startswith("!"):
        raise DriveError(f"{asked!r} is not a room: give its #alias:server or !id:server")
    if not await plugin.rooms.is_joined(room, plugin.bridge.info.bot_user_id):
        raise Denied(f"the drive's bot is not in {asked}: invite it there first")
    if not await plugin.rooms.is_joined(room, user):
        raise Denied(f"you are not a member of {asked}")
    await drive.check_share(
        user, f"{folder.name}/{path}", await drive.kinds_of(node), {"room_id": room}
    )
    # The sends carry transaction ids of their own (one per request).
    event = MatrixEvent(
        {"event_id": f"$drive-web-{secrets.token_hex(12)}", "room_id": room, "sender": user}
    )
    ctx = EventContext(plugin.bridge, event, "drive")
    how = await plugin.rooms.post_file(ctx, room, node, user)
    return web.json_response({"room": room, "posted": how, "path": path})
