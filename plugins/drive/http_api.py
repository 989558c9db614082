"""The drive's HTTP API on the bridge's web server, under ``/_anywhere/drive/v1/``.
Every route authenticates the person with their Matrix access token, except the OpenAPI
document (the same static text for everyone: no configuration, no secrets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import http_files as files
from . import http_shares as shares
from .http_common import PLUGIN_KEY, PREFIX
from .openapi import document
from .webapp import sharing, uploads
from .webdav import http_routes as app_passwords

#: The routes open without a token (tests check that every other one needs one).
PUBLIC_ROUTES = frozenset({f"{PREFIX}/openapi.json"})

if TYPE_CHECKING:
    from . import DrivePlugin


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(plugin: DrivePlugin, app: web.Application) -> None:
    app[PLUGIN_KEY] = plugin
    folder = f"{PREFIX}/folders/{{folder}}"
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", openapi)
    r.add_get(f"{PREFIX}/quota", files.quota)
    r.add_get(f"{PREFIX}/app-passwords", app_passwords.list_passwords)
    r.add_post(f"{PREFIX}/app-passwords", app_passwords.create)
    r.add_delete(f"{PREFIX}/app-passwords/{{name}}", app_passwords.revoke)
    r.add_get(f"{PREFIX}/folders", shares.list_folders)
    r.add_post(f"{PREFIX}/folders", shares.create_folder)
    r.add_get(f"{folder}/members", shares.members)
    r.add_post(f"{folder}/members", shares.invite)
    r.add_delete(f"{folder}/members/{{user}}", shares.revoke)
    r.add_post(f"{folder}/accept", shares.accept)
    r.add_post(f"{folder}/decline", shares.decline)
    r.add_get(f"{folder}/list", files.list_folder)
    r.add_get(f"{folder}/tree", files.tree)
    r.add_get(f"{folder}/changes", files.changes)
    r.add_put(f"{folder}/files/{{path:.+}}", files.upload)
    r.add_get(f"{folder}/files/{{path:.+}}", files.download)
    r.add_delete(f"{folder}/files/{{path:.+}}", files.delete)
    r.add_post(f"{folder}/mkdir", files.mkdir)
    r.add_post(f"{folder}/move", files.move)
    r.add_get(f"{folder}/versions", files.versions)
    r.add_post(f"{folder}/revert", files.revert)
    r.add_get(f"{folder}/trash", files.trash)
    r.add_delete(f"{folder}/trash", files.empty_trash)
    r.add_post(f"{folder}/restore", files.restore)
    r.add_post(f"{folder}/share", sharing.share)
    uploads.add_routes(app, PREFIX, folder)
    r.add_get(f"{PREFIX}/nodes/{{node}}/content", files.download_node)
    shared = f"{PREFIX}/shared/{{room}}/{{node}}/{{version:\\d+}}"
    r.add_get(f"{shared}/{{sharer}}/{{sig}}", files.download_shared)
    r.add_get(f"{shared}/{{sig}}", files.old_shared_link)
