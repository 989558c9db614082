"""``/dav/``: each person's accepted shared folders as WebDAV class 1 and 2 (RFC 4918),
for Finder, Windows Explorer, GNOME Files, davfs2 and rclone.

Written on aiohttp, on the bridge's own event loop, as a thin layer over the drive
service: every change goes through the same :class:`~anywhere.plugins.drive.service.Drive` calls
as chat and the HTTP API, so acceptance, roles, quota, the copyright rule, versions
and the trash are the same here; uploads and downloads are streamed. This module routes
the methods and serves the content ones (GET, PUT, DELETE, MKCOL, COPY, MOVE); signing
in, resources, locks and properties are objects of their own beside it."""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import DriveError, PreconditionFailed
from ..http_common import STARTED_KEY, etag, file_tag, preconditions, require_permitted
from ..http_files import UPLOAD_CHUNK, _send_content
from ..model import Folder, Node
from ..names import InvalidName, check_name, name_key
from ..streams import read_ahead
from . import xml
from .answers import DavError, text
from .auth import REALM, AppPasswordLogin
from .conditions import BadIfHeader
from .locking import Locking
from .passwords import AppPasswords
from .properties import Properties
from .resources import ROOT, Resources, Target, split_url
from .state import DavLocks, DeadProperties

if TYPE_CHECKING:
    from .. import DrivePlugin

METHODS = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK"


@dataclass(frozen=True)
class Parts:
    """The objects /dav/ is made of, once the drive has started."""

    login: AppPasswordLogin
    resources: Resources
    locking: Locking
    properties: Properties


class DavServer:
    def __init__(self, plugin: DrivePlugin) -> None:
        self.plugin = plugin  # routes are added before the drive starts
        self._parts: Parts | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", ROOT, self.handle)
        app.router.add_route("*", ROOT + "/{path:.*}", self.handle)

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            bridge, drive = self.plugin.bridge, self.plugin.drive
            resources = Resources(drive)
            locking = Locking(DavLocks(bridge.db), resources, drive)
            self._parts = Parts(
                AppPasswordLogin(
                    AppPasswords(bridge.db),
                    bridge.info.homeserver_domain,
                    lambda user: require_permitted(self.plugin, user),
                ),
                resources,
                locking,
                Properties(DeadProperties(bridge.db), resources, locking, drive),
            )
        return self._parts

    @property
    def drive(self):
        return self.plugin.drive

    @property
    def resources(self) -> Resources:
        return self.parts.resources

    @property
    def locking(self) -> Locking:
        return self.parts.locking

    # ----- the way in -----
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.plugin.drive is None:
            return text(503, "the drive is starting; try again in a moment")
        handlers = {
            "PROPFIND": self.parts.properties.propfind,
            "PROPPATCH": self.parts.properties.proppatch,
            "LOCK": self.parts.locking.lock,
            "UNLOCK": self.parts.locking.unlock,
        }
        handler = handlers.get(request.method) or getattr(
            self, f"do_{request.method.lower()}", None
        )
        try:
            user = await self.parts.login.authenticate(request)
            if handler is None:
                raise DavError(405, f"{request.method} is not a WebDAV method this server has")
            return await handler(request, user)
        except DavError as exc:
            if exc.body is not None:
                return web.Response(
                    status=exc.status, body=exc.body, content_type="application/xml"
                )
            headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if exc.status == 401 else {}
            return text(exc.status, exc.message, headers)
        except DriveError as exc:
            return text(exc.status, exc.message, exc.headers)
        except (InvalidName, xml.BadXml, BadIfHeader) as exc:
            return text(400, str(exc))
        except ConnectionError:
            if request.get(STARTED_KEY):
                raise
            return text(400, "the request was cut off")
        except Exception:
            if request.get(STARTED_KEY):
                raise
            self.plugin.bridge.log.exception(
                "webdav request failed", plugin="drive", path=request.path
            )
            return text(500, "the drive failed because of an error in the bridge; see its log")

    # ----- methods -----
    async def do_options(self, request: web.Request, user: str) -> web.Response:
        return web.Response(
            status=200,
            headers={"DAV": "1, 2", "Allow": METHODS, "MS-Author-Via": "DAV"},
        )

    async def do_get(self, request: web.Request, user: str) -> web.StreamResponse:
        target = await self.resources.locate(user, request.rel_url.raw_path)
        await self.locking.check_if(request, user, target)
        if not target.is_root and target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        if target.is_root or target.node.is_dir:
            return await self.listing(user, target)
        return await _send_content(request, target.node, target.where)

    do_head = do_get

    async def listing(self, user: str, target: Target) -> web.Response:
        rows = []
        for child, is_dir in await self.resources.children(user, target):
            href, name = html.escape(child.href(collection=is_dir)), html.escape(child.names[-1])
            rows.append(f'<li><a href="{href}">{name}</a></li>')
        title = html.escape("/" + target.where)
        page = f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{''.join(rows)}</ul>"
        return web.Response(text=page, content_type="text/html")

    async def do_put(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or not target.rel:
            raise DavError(405, "files go inside a folder; PUT needs a path in one")
        if target.node is not None and target.node.is_dir:
            raise DavError(405, f"{target.where} is a folder")
        if "Content-Range" in request.headers:  # RFC 9110 14.5: never store a part as all
            raise DavError(400, "a PUT with Content-Range is not supported: send the whole file")
        tokens = await self.locking.check_if(request, user, target)
        await self.resources.parent_of(target)
        await self.locking.check_locks(user, target, tokens, member_change=target.node is None)
        path = "/".join(target.rel)
        verdict = preconditions(request, file_tag(target.node) if target.node else None, path)
        async with contextlib.aclosing(read_ahead(_body(request))) as body:
            node, _ = await self.drive.upload(
                user,
                target.folder,
                path,
                body,
                declared_size=request.content_length,
                mime=request.headers.get("Content-Type") or None,
                if_match=int(verdict.matched.opaque) if verdict.matched is not None else None,
            )
        return web.Response(
            status=201 if target.node is None else 204, headers={"ETag": etag(node)}
        )

    async def do_delete(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or not target.rel:
            raise DavError(
                403, "a shared folder cannot be deleted here; leave it with !drive leave"
            )
        if target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        tokens = await self.locking.check_if(request, user, target)
        await self.locking.check_locks(user, target, tokens, member_change=True, below=True)
        verdict = preconditions(request, file_tag(target.node), target.where)
        revision = int(verdict.matched.opaque) if verdict.matched is not None else None
        await self.drive.tree.trash(target.folder, target.node, user, revision)
        await self.locking.forget_at(target)
        return web.Response(status=204)

    async def do_mkcol(self, request: web.Request, user: str) -> web.Response:
        if await request.content.read(1):
            raise DavError(415, "MKCOL takes no request body")
        names = split_url(request.rel_url.raw_path)
        if len(names) == 1:  # a new shared folder, as !drive mkdir NAME makes
            if name_key(names[0]) in await self.resources.folders(user):
                raise DavError(405, f"you have a folder named {names[0]!r} already")
            await self.plugin.rooms.create_folder(user, check_name(names[0]))
            return web.Response(status=201)
        target = await self.resources.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or target.node is not None:
            raise DavError(405, f"{target.where or '/'} exists already")
        tokens = await self.locking.check_if(request, user, target)
        await self.resources.parent_of(target)
        await self.locking.check_locks(user, target, tokens, member_change=True)
        await self.drive.tree.mkdir(target.folder, target.rel, user)
        return web.Response(status=201)

    async def do_copy(self, request: web.Request, user: str) -> web.Response:
        return await self.transfer(request, user, move=False)

    async def do_move(self, request: web.Request, user: str) -> web.Response:
        return await self.transfer(request, user, move=True)

    async def transfer(self, request: web.Request, user: str, *, move: bool) -> web.Response:
        source = await self.resources.locate(user, request.rel_url.raw_path, write=move)
        if source.is_root or source.node is None:
            raise DavError(
                404 if not source.is_root else 403, f"nothing to copy at /{source.where}"
            )
        if move and not source.rel:
            raise DavError(403, "a shared folder itself cannot be moved; move what it holds")
        depth = request.headers.get("Depth", "infinity").strip().lower()
        if depth not in ("0", "infinity") or (move and depth != "infinity"):
            raise DavError(400, "Depth must be infinity (or 0 for a COPY)")
        dest = await self.resources.destination(request, user)
        same = dest.folder.id == source.folder.id
        inside = not source.rel or dest.key.startswith(source.key + "/")
        if same and (dest.key == source.key or inside):
            raise DavError(403, "the destination is the source or inside it")
        tokens = await self.locking.check_if(request, user, source)
        if move:
            await self.locking.check_locks(user, source, tokens, member_change=True, below=True)
        parent = await self.resources.parent_of(dest)
        overwrite = request.headers.get("Overwrite", "T").strip().upper() != "F"
        existed = dest.node is not None
        await self.locking.check_locks(user, dest, tokens, member_change=not existed, below=existed)
        replaced = None
        if existed:
            if not overwrite:
                raise PreconditionFailed(f"{dest.where} exists and Overwrite is F")
            replaced = await self.drive.tree.trash(dest.folder, dest.node, user)
        name, deep = dest.rel[-1], depth == "infinity"
        before = await self._subtree(source.folder, source.node, deep)
        try:
            if move and same:
                made = await self.drive.tree.move(source.folder, source.node, parent, name, user)
            elif move:
                made = await self.drive.move_to_folder(
                    user, source.folder, source.node, dest.folder, parent, name
                )
            else:
                made = await self.drive.copy(
                    user, source.folder, source.node, dest.folder, parent, name, recursive=deep
                )
        except BaseException:
            # refused (quota, the copyright rule) or failed: what was there comes back
            if replaced is not None:
                await self.drive.tree.restore(dest.folder, replaced, user)
            raise
        if replaced is not None:
            await self.locking.forget_at(dest)
        if move:
            await self.locking.forget_at(source)
        if made.id != source.node.id:  # a copy: its dead properties go with it
            after = dict(await self._subtree(dest.folder, made, deep))
            for rel, node_id in before:
                if rel in after:
                    await self.parts.properties.dead.copy(node_id, after[rel])
        return web.Response(status=204 if existed else 201)

    async def _subtree(self, folder: Folder, node: Node, deep: bool) -> list[tuple[str, str]]:
        """``(path relative to node, node id)`` of ``node`` and, if ``deep``, all below."""
        below = await self.drive.tree.walk(folder, node) if node.is_dir and deep else []
        return [("", node.id)] + [(rel, n.id) for rel, n in below]


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return request.content.iter_chunked(UPLOAD_CHUNK)
