"""App passwords over the drive's HTTP API (``/_anywhere/drive/v1/app-passwords``), for
the web app: the same as ``!drive apppassword``, authenticated with a Matrix token."""

from __future__ import annotations

from aiohttp import web

from ..http_common import (
    authenticated,
    json_body,
    plugin_of,
    refuse_drive_sessions,
    required,
)
from .passwords import AppPasswords


def _store(request: web.Request) -> AppPasswords:
    return AppPasswords(plugin_of(request).bridge.db)


@authenticated
async def list_passwords(request: web.Request, user: str) -> web.Response:
    refuse_drive_sessions(request, "listing app passwords")
    items = [p.as_json() for p in await _store(request).list(user)]
    return web.json_response({"app_passwords": items})


@authenticated
async def create(request: web.Request, user: str) -> web.Response:
    """A new app password; the answer is the only place it is ever shown."""
    refuse_drive_sessions(request, "creating an app password")
    name = required(await json_body(request), "name")
    secret = await _store(request).create(user, name)
    return web.json_response(
        {"name": name.strip(), "user": user, "password": secret},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


@authenticated
async def revoke(request: web.Request, user: str) -> web.Response:
    refuse_drive_sessions(request, "revoking an app password")
    await _store(request).revoke(user, request.match_info["name"])
    return web.Response(status=204)
