"""``/dav/``: each person's accepted shared folders as WebDAV class 1 and 2 (RFC 4918),
for Finder, Windows Explorer, GNOME Files, davfs2 and rclone.

Written on aiohttp, on the bridge's own event loop, as a thin layer over the drive
service: every change goes through the same :class:`~plugins.drive.service.Drive` calls
as chat and the HTTP API, so acceptance, roles, quota, the copyright rule, versions
and the trash are the same here; uploads and downloads are streamed."""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import html
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web

from ..errors import Denied, DriveError, NotFound, PreconditionFailed
from ..http_common import STARTED_KEY, etag, file_tag, preconditions, require_permitted
from ..http_files import UPLOAD_CHUNK, _send_content
from ..model import Folder, Node
from ..names import InvalidName, check_name, name_key
from ..streams import read_ahead
from . import xml
from .conditions import BadIfHeader, IfList, parse_if, submitted_tokens
from .passwords import AppPasswords
from .state import DavLocks, DeadProperties, Lock, clamp_timeout, path_key

if TYPE_CHECKING:
    from .. import DrivePlugin

ROOT = "/dav"
REALM = "Anywhere drive"
METHODS = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK"
LIVE = (
    "resourcetype",
    "displayname",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "creationdate",
    "supportedlock",
    "lockdiscovery",
    "quota-available-bytes",
    "quota-used-bytes",
)
MAX_PROPS = 100  # dead properties per file or folder
MAX_PROP = 64 * 1024  # characters of one property's XML
SUPPORTED_LOCK = (
    "<D:supportedlock>"
    + "".join(
        f"<D:lockentry><D:lockscope><D:{s}/></D:lockscope><D:locktype><D:write/></D:locktype>"
        "</D:lockentry>"
        for s in ("exclusive", "shared")
    )
    + "</D:supportedlock>"
)


class DavError(Exception):
    def __init__(self, status: int, message: str, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.body = status, message, body


@dataclass
class Target:
    """What a URL under /dav/ names for a person: the root, a folder, or a path in one."""

    names: list[str]  # decoded URL segments after /dav/
    base: str = ROOT  # /dav as clients see it (behind a proxy: its prefix first)
    folder: Folder | None = None
    display: str = ""  # the folder's name in this person's /dav/
    rel: list[str] = field(default_factory=list)  # the path inside the folder
    node: Node | None = None  # None: nothing there (yet)

    @property
    def key(self) -> str:
        return path_key(self.rel or [])

    @property
    def is_root(self) -> bool:
        return self.folder is None

    @property
    def parent_key(self) -> str:
        return path_key((self.rel or [])[:-1])

    def href(self, collection: bool | None = None) -> str:
        """This resource's URL path (a collection's ends with /)."""
        if collection is None:
            collection = not self.rel or (self.node is not None and self.node.is_dir)
        return self.href_of(self.rel, collection)

    def href_of(self, rel: list[str], collection: bool = False) -> str:
        """The URL path of ``rel`` in this resource's folder."""
        if self.folder is None:
            return self.base + "/"
        parts = [self.display, *rel]
        tail = "/" if collection or not rel else ""
        return self.base + "/" + "/".join(quote(p, safe="") for p in parts) + tail

    @property
    def where(self) -> str:
        return "/".join([self.display, *(self.rel or [])])


def _split_url(raw_path: str, base: str = ROOT) -> list[str]:
    """The decoded segments of a raw URL path under ``base`` (``%2F`` stays inside one)."""
    if raw_path != base and not raw_path.startswith(base + "/"):
        raise DavError(502, f"{raw_path} is not under {base}/ on this server")
    return [unquote(p) for p in raw_path[len(base) :].split("/") if p]


def _http_date(ms: int) -> str:
    return email.utils.formatdate(ms / 1000, usegmt=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DavServer:
    def __init__(self, plugin: DrivePlugin) -> None:
        self.plugin = plugin

    @property
    def public(self) -> tuple[str, str]:
        """``(host, /dav path)`` as clients see them through ``public_url`` (a proxy may
        serve the bridge under a path prefix, which it strips); ``("", "/dav")`` without."""
        url = urlsplit(self.drive.settings.public_url or "")
        return url.netloc, url.path.rstrip("/") + ROOT

    @property
    def drive(self):
        return self.plugin.drive

    @property
    def locks(self) -> DavLocks:
        return DavLocks(self.plugin.bridge.db)

    @property
    def props(self) -> DeadProperties:
        return DeadProperties(self.plugin.bridge.db)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", ROOT, self.handle)
        app.router.add_route("*", ROOT + "/{path:.*}", self.handle)

    # ----- the way in -----
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.plugin.drive is None:
            return _text(503, "the drive is starting; try again in a moment")
        handler = getattr(self, f"do_{request.method.lower()}", None)
        try:
            user = await self.authenticate(request)
            if handler is None:
                raise DavError(405, f"{request.method} is not a WebDAV method this server has")
            return await handler(request, user)
        except DavError as exc:
            if exc.body is not None:
                return web.Response(
                    status=exc.status, body=exc.body, content_type="application/xml"
                )
            headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if exc.status == 401 else {}
            return _text(exc.status, exc.message, headers)
        except DriveError as exc:
            return _text(exc.status, exc.message, exc.headers)
        except (InvalidName, xml.BadXml, BadIfHeader) as exc:
            return _text(400, str(exc))
        except ConnectionError:
            if request.get(STARTED_KEY):
                raise
            return _text(400, "the request was cut off")
        except Exception:
            if request.get(STARTED_KEY):
                raise
            self.plugin.bridge.log.exception(
                "webdav request failed", plugin="drive", path=request.path
            )
            return _text(500, "the drive failed because of an error in the bridge; see its log")

    async def authenticate(self, request: web.Request) -> str:
        """The person an app password belongs to (HTTP Basic), allowed to use the drive."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise DavError(
                401,
                "sign in with your Matrix ID and an app password (create one by sending "
                "!drive apppassword create NAME to the bot)",
            )
        try:
            login, _, secret = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise DavError(401, "the Authorization header is not valid Basic credentials") from exc
        if login.startswith("@") and ":" not in login and ":" in secret:
            # "@alice:example.org:password": Basic splits at the first colon
            server, _, secret = secret.partition(":")
            login = f"{login}:{server}"
        user = self.user_id(login)
        if not user or not await AppPasswords(self.plugin.bridge.db).verify(user, secret):
            raise DavError(
                401,
                "wrong user name or app password: the user name is your Matrix ID, the "
                "password one made with !drive apppassword create NAME",
            )
        await require_permitted(self.plugin, user)
        return user

    def user_id(self, login: str) -> str | None:
        """The Matrix ID a Basic user name means: ``alice`` (on this homeserver),
        ``alice@example.org`` or ``@alice:example.org``."""
        login = login.strip()
        if login.startswith("@") and ":" in login:
            return login
        local, at, server = login.partition("@")
        if local and ":" not in login:
            return f"@{local}:{server if at else self.plugin.bridge.info.homeserver_domain}"
        return None

    # ----- what a URL names -----
    async def folders(self, user: str) -> dict[str, tuple[Folder, str, str]]:
        """``{name key: (folder, shown name, share state)}`` for the person's folders
        (accepted or invited); two folders of one name are told apart by their id."""
        found = await self.drive.access.folders_of(user)
        counts: dict[str, int] = {}
        for folder, _ in found:
            counts[name_key(folder.name)] = counts.get(name_key(folder.name), 0) + 1
        shown: dict[str, tuple[Folder, str, str]] = {}
        for folder, member in found:
            name = folder.name
            if counts[name_key(name)] > 1:
                name = f"{name}~{folder.id[:8]}"
            shown[name_key(name)] = (folder, name, member.state)
        return shown

    async def locate(
        self, user: str, raw_path: str, *, write: bool = False, client_url: bool = False
    ) -> Target:
        """What ``raw_path`` names: a request's path (``/dav/...``), or with
        ``client_url`` a URL path a client wrote (Destination, If), which may carry the
        public prefix."""
        base = self.public[1]
        names = _split_url(raw_path, base if client_url and raw_path.startswith(base) else ROOT)
        target = Target(names, base=base, rel=[])
        if not names:
            return target
        folders = await self.folders(user)
        entry = folders.get(name_key(names[0]))
        if entry is None:
            raise DavError(404, f"you have no folder named {names[0]!r}")
        target.folder, target.display, _ = entry
        target.rel = [check_name(n) for n in names[1:]]
        await self.drive.access.require(target.folder, user, write=write)
        try:
            target.node = await self.drive.tree.lookup(target.folder, target.rel)
        except NotFound:
            target.node = None
        return target

    async def parent_of(self, target: Target) -> Node:
        """The folder a new item at ``target`` goes in: 409 when it does not exist."""
        try:
            parent = await self.drive.tree.lookup(target.folder, target.rel[:-1])
        except NotFound as exc:
            raise DavError(409, f"the folder above {target.where} does not exist") from exc
        if not parent.is_dir:
            raise DavError(409, f"{parent.name} is a file, not a folder")
        return parent

    async def destination(self, request: web.Request, user: str) -> Target:
        header = request.headers.get("Destination")
        if not header:
            raise DavError(400, "a Destination header is needed (the URL to copy or move to)")
        url = urlsplit(header)
        if url.netloc and url.netloc not in (request.host, self.public[0]):
            raise DavError(502, f"the destination {header} is on another server")
        dest = await self.locate(user, url.path, write=True, client_url=True)
        if dest.is_root or not dest.rel:
            raise DavError(
                403, "the destination must be inside one of your folders, not a folder itself"
            )
        return dest

    # ----- conditions and locks -----
    async def check_if(self, request: web.Request, user: str, target: Target) -> set[str]:
        """Evaluate the If header (412 when no list holds); return the tokens it submits."""
        lists = parse_if(request.headers.get("If"))
        if not lists:
            return set()
        for lst in lists:
            about = target
            if lst.resource is not None:
                try:
                    about = await self.locate(user, urlsplit(lst.resource).path, client_url=True)
                except (DavError, DriveError, InvalidName):
                    continue
            if await self._holds(lst, about):
                return submitted_tokens(lists)
        raise DavError(412, "no condition list of the If header holds; nothing was changed")

    async def _holds(self, lst: IfList, about: Target) -> bool:
        active = (
            [lk for lk in await self.locks.in_folder(about.folder.id) if lk.covers(about.key)]
            if about.folder is not None
            else []
        )
        for cond in lst.conditions:
            if cond.kind == "token":
                met = any(lk.token == cond.value for lk in active)
            else:
                met = about.node is not None and etag(about.node) == cond.value
            if met == cond.negated:
                return False
        return True

    async def check_locks(
        self,
        user: str,
        target: Target,
        tokens: set[str],
        *,
        member_change: bool = False,
        below: bool = False,
    ) -> None:
        """423 when a lock applies that the request does not submit the token of (or
        that is someone else's): locks on ``target``, on its parent when a member of
        that collection is added or removed, and on what is below it."""
        if target.folder is None:
            return
        for lock in await self.locks.in_folder(target.folder.id):
            applies = (
                lock.covers(target.key)
                or (member_change and lock.path_key == target.parent_key)
                or (below and lock.is_below(target.key))
            )
            if applies and not (lock.token in tokens and lock.user_id == user):
                root = target.href_of(lock.path.split("/") if lock.path else [])
                raise DavError(
                    423,
                    f"{target.where} is locked",
                    xml.error_body("lock-token-submitted", [root], f"{target.where} is locked"),
                )

    # ----- methods -----
    async def do_options(self, request: web.Request, user: str) -> web.Response:
        return web.Response(
            status=200,
            headers={"DAV": "1, 2", "Allow": METHODS, "MS-Author-Via": "DAV"},
        )

    async def do_get(self, request: web.Request, user: str) -> web.StreamResponse:
        target = await self.locate(user, request.rel_url.raw_path)
        await self.check_if(request, user, target)
        if not target.is_root and target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        if target.is_root or target.node.is_dir:
            return await self.listing(request, user, target)
        return await _send_content(request, target.node, target.where)

    do_head = do_get

    async def listing(self, request: web.Request, user: str, target: Target) -> web.Response:
        rows = []
        for child, name, is_dir in await self.children(user, target):
            href = child.href(collection=is_dir)
            rows.append(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a></li>')
        title = html.escape("/" + target.where)
        text = f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{''.join(rows)}</ul>"
        return web.Response(text=text, content_type="text/html")

    async def children(self, user: str, target: Target) -> list[tuple[Target, str, bool]]:
        if target.is_root:
            return [
                (Target([name], target.base, folder, name, [], None), name, True)
                for folder, name, state in (await self.folders(user)).values()
                if state == "joined"
            ]
        out = []
        for node in await self.drive.tree.children(target.node):
            child = Target(target.names + [node.name], target.base, target.folder, target.display)
            child.rel, child.node = [*target.rel, node.name], node
            out.append((child, node.name, node.is_dir))
        return out

    async def do_put(self, request: web.Request, user: str) -> web.Response:
        target = await self.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or not target.rel:
            raise DavError(405, "files go inside a folder; PUT needs a path in one")
        if target.node is not None and target.node.is_dir:
            raise DavError(405, f"{target.where} is a folder")
        if "Content-Range" in request.headers:  # RFC 9110 14.5: never store a part as all
            raise DavError(400, "a PUT with Content-Range is not supported: send the whole file")
        tokens = await self.check_if(request, user, target)
        await self.parent_of(target)
        await self.check_locks(user, target, tokens, member_change=target.node is None)
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
        target = await self.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or not target.rel:
            raise DavError(
                403, "a shared folder cannot be deleted here; leave it with !drive leave"
            )
        if target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        tokens = await self.check_if(request, user, target)
        await self.check_locks(user, target, tokens, member_change=True, below=True)
        verdict = preconditions(request, file_tag(target.node), target.where)
        revision = int(verdict.matched.opaque) if verdict.matched is not None else None
        await self.drive.tree.trash(target.folder, target.node, user, revision)
        await self.locks.remove_at(target.folder.id, target.key)
        return web.Response(status=204)

    async def do_mkcol(self, request: web.Request, user: str) -> web.Response:
        if await request.content.read(1):
            raise DavError(415, "MKCOL takes no request body")
        names = _split_url(request.rel_url.raw_path)
        if len(names) == 1:  # a new shared folder, as !drive mkdir NAME makes
            if name_key(names[0]) in await self.folders(user):
                raise DavError(405, f"you have a folder named {names[0]!r} already")
            await self.plugin.rooms.create_folder(user, check_name(names[0]))
            return web.Response(status=201)
        target = await self.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root or target.node is not None:
            raise DavError(405, f"{target.where or '/'} exists already")
        tokens = await self.check_if(request, user, target)
        await self.parent_of(target)
        await self.check_locks(user, target, tokens, member_change=True)
        await self.drive.tree.mkdir(target.folder, target.rel, user)
        return web.Response(status=201)

    async def do_copy(self, request: web.Request, user: str) -> web.Response:
        return await self.transfer(request, user, move=False)

    async def do_move(self, request: web.Request, user: str) -> web.Response:
        return await self.transfer(request, user, move=True)

    async def transfer(self, request: web.Request, user: str, *, move: bool) -> web.Response:
        source = await self.locate(user, request.rel_url.raw_path, write=move)
        if source.is_root or source.node is None:
            raise DavError(
                404 if not source.is_root else 403, f"nothing to copy at /{source.where}"
            )
        if move and not source.rel:
            raise DavError(403, "a shared folder itself cannot be moved; move what it holds")
        depth = request.headers.get("Depth", "infinity").strip().lower()
        if depth not in ("0", "infinity") or (move and depth != "infinity"):
            raise DavError(400, "Depth must be infinity (or 0 for a COPY)")
        dest = await self.destination(request, user)
        same = dest.folder.id == source.folder.id
        inside = not source.rel or dest.key.startswith(source.key + "/")
        if same and (dest.key == source.key or inside):
            raise DavError(403, "the destination is the source or inside it")
        tokens = await self.check_if(request, user, source)
        if move:
            await self.check_locks(user, source, tokens, member_change=True, below=True)
        parent = await self.parent_of(dest)
        overwrite = request.headers.get("Overwrite", "T").strip().upper() != "F"
        existed = dest.node is not None
        await self.check_locks(user, dest, tokens, member_change=not existed, below=existed)
        if existed:
            if not overwrite:
                raise PreconditionFailed(f"{dest.where} exists and Overwrite is F")
            await self.drive.tree.trash(dest.folder, dest.node, user)
            await self.locks.remove_at(dest.folder.id, dest.key)
        name = dest.rel[-1]
        before = await self._subtree(source, depth == "infinity")
        if move and same:
            made = await self.drive.tree.move(source.folder, source.node, parent, name, user)
        elif move:
            made = await self.drive.move_to_folder(
                user, source.folder, source.node, dest.folder, parent, name
            )
        else:
            made = await self.drive.copy(
                user, source.folder, source.node, dest.folder, parent, name,
                recursive=depth == "infinity",
            )  # fmt: skip
        if move:
            await self.locks.remove_at(source.folder.id, source.key)
        if made.id != source.node.id:  # a copy: its dead properties go with it
            after = dict(await self._subtree_of(dest.folder, made, depth == "infinity"))
            for rel, node_id in before:
                if rel in after:
                    await self.props.copy(node_id, after[rel])
        return web.Response(status=204 if existed else 201)

    async def _subtree(self, target: Target, deep: bool) -> list[tuple[str, str]]:
        return await self._subtree_of(target.folder, target.node, deep)

    async def _subtree_of(self, folder: Folder, node: Node, deep: bool) -> list[tuple[str, str]]:
        below = await self.drive.tree.walk(folder, node) if node.is_dir and deep else []
        return [("", node.id)] + [(rel, n.id) for rel, n in below]

    # ----- properties -----
    async def do_propfind(self, request: web.Request, user: str) -> web.Response:
        target = await self.locate(user, request.rel_url.raw_path)
        if not target.is_root and target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        depth = request.headers.get("Depth", "infinity").strip().lower()
        if depth not in ("0", "1"):
            raise DavError(
                403,
                "Depth: infinity is not served; ask with Depth: 1, folder by folder",
                xml.error_body("propfind-finite-depth"),
            )
        body = xml.parse(await _small_body(request))
        mode, wanted = "allprop", []
        if body is not None:
            if body.tag != f"{{{xml.DAV}}}propfind":
                raise xml.BadXml("the PROPFIND body must be a DAV:propfind element")
            for child in body:
                if child.tag == f"{{{xml.DAV}}}propname":
                    mode = "propname"
                elif child.tag == f"{{{xml.DAV}}}prop":
                    mode, wanted = "prop", [xml.split_tag(p.tag) for p in child]
        entries = [(target, target.is_root or target.node.is_dir)]
        if depth == "1" and entries[0][1]:
            entries += [(c, d) for c, _, d in await self.children(user, target)]
        lock_list = (
            await self.locks.in_folder(target.folder.id) if target.folder is not None else []
        )
        quota = await self.drive.quota(target.folder.owner if target.folder else user)
        responses = []
        for entry, is_dir in entries:
            live = self.live_props(entry, is_dir, lock_list)
            if is_dir:  # RFC 4331, asked for by name only: the folder owner's quota
                live["quota-available-bytes"] = (
                    f"<D:quota-available-bytes>{quota.free}</D:quota-available-bytes>"
                )
                live["quota-used-bytes"] = f"<D:quota-used-bytes>{quota.used}</D:quota-used-bytes>"
            dead = await self.props.of(entry.node.id) if entry.node is not None else {}
            found: list[str] = []
            missing: list[str] = []
            if mode == "propname":
                found = [xml.empty_element(xml.DAV, n) for n in live] + [
                    xml.empty_element(ns, n) for ns, n in dead
                ]
            elif mode == "allprop":
                found = [v for k, v in live.items() if not k.startswith("quota-")]
                found += list(dead.values())
            else:
                for ns, n in wanted:
                    if ns == xml.DAV and n in live:
                        found.append(live[n])
                    elif (ns, n) in dead:
                        found.append(dead[(ns, n)])
                    else:
                        missing.append(xml.empty_element(ns, n))
            responses.append(
                xml.response(entry.href(collection=is_dir), [(200, found), (404, missing)])
            )
        return _multistatus(responses)

    def live_props(self, target: Target, is_dir: bool, locks: list[Lock]) -> dict[str, str]:
        node = target.node
        name = target.display if not target.rel else target.rel[-1]
        props = {
            "resourcetype": "<D:resourcetype><D:collection/></D:resourcetype>"
            if is_dir
            else "<D:resourcetype/>",
            "displayname": f"<D:displayname>{xml.esc(name)}</D:displayname>",
        }
        if node is not None:
            props["getlastmodified"] = (
                f"<D:getlastmodified>{_http_date(node.updated_at)}</D:getlastmodified>"
            )
            props["creationdate"] = f"<D:creationdate>{_iso(node.updated_at)}</D:creationdate>"
        if node is not None and not is_dir:
            props["getcontentlength"] = f"<D:getcontentlength>{node.size}</D:getcontentlength>"
            props["getcontenttype"] = (
                f"<D:getcontenttype>{xml.esc(node.mime or 'application/octet-stream')}"
                "</D:getcontenttype>"
            )
            props["getetag"] = f"<D:getetag>{xml.esc(etag(node))}</D:getetag>"
        if target.folder is not None:
            props["supportedlock"] = SUPPORTED_LOCK
            active = [lk for lk in locks if lk.covers(target.key)]
            props["lockdiscovery"] = self.lockdiscovery(target, active)
        return props

    def lockdiscovery(self, target: Target, locks: list[Lock]) -> str:
        return (
            "<D:lockdiscovery>"
            + "".join(self.activelock(target, lk) for lk in locks)
            + ("</D:lockdiscovery>")
        )

    def activelock(self, target: Target, lock: Lock) -> str:
        root = target.href_of(lock.path.split("/") if lock.path else [])
        return (
            "<D:activelock><D:locktype><D:write/></D:locktype>"
            f"<D:lockscope><D:{'exclusive' if lock.exclusive else 'shared'}/></D:lockscope>"
            f"<D:depth>{'infinity' if lock.depth_infinity else '0'}</D:depth>"
            + (lock.owner_xml or "")
            + f"<D:timeout>Second-{lock.timeout_seconds}</D:timeout>"
            f"<D:locktoken><D:href>{xml.esc(lock.token)}</D:href></D:locktoken>"
            f"<D:lockroot><D:href>{xml.esc(root)}</D:href></D:lockroot></D:activelock>"
        )

    async def do_proppatch(self, request: web.Request, user: str) -> web.Response:
        target = await self.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root:
            raise DavError(403, "/dav/ itself has no properties to change")
        if target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        tokens = await self.check_if(request, user, target)
        await self.check_locks(user, target, tokens)
        body = xml.parse(await _small_body(request))
        if body is None or body.tag != f"{{{xml.DAV}}}propertyupdate":
            raise xml.BadXml("the PROPPATCH body must be a DAV:propertyupdate element")
        changes: list[tuple[str, str, str | None]] = []
        for action in body:
            if action.tag not in (f"{{{xml.DAV}}}set", f"{{{xml.DAV}}}remove"):
                continue
            setting = action.tag.endswith("}set")
            for prop in action:
                if prop.tag != f"{{{xml.DAV}}}prop":
                    continue
                for item in prop:
                    ns, n = xml.split_tag(item.tag)
                    item.tail = None
                    changes.append((ns, n, xml.element_text(item) if setting else None))
        protected = [(ns, n) for ns, n, _ in changes if ns == xml.DAV and n in LIVE]
        names = [xml.empty_element(ns, n) for ns, n, _ in changes]
        if protected:
            bad = [xml.empty_element(ns, n) for ns, n in protected]
            others = [e for e in names if e not in bad]
            return _multistatus([xml.response(target.href(), [(403, bad), (424, others)])])
        kept = set(await self.props.of(target.node.id))
        for ns, n, value in changes:
            (kept.add if value is not None else kept.discard)((ns, n))
        too_big = [xml.empty_element(ns, n) for ns, n, v in changes if v and len(v) > MAX_PROP]
        if too_big or len(kept) > MAX_PROPS:
            why = (
                f"a property may hold at most {MAX_PROP} characters of XML"
                if too_big
                else f"a file or folder may have at most {MAX_PROPS} properties"
            )
            failed = too_big or names
            others = [e for e in names if e not in failed]
            return _multistatus([xml.response(target.href(), [(507, failed), (424, others)], why)])
        await self.props.apply(target.node.id, changes)
        return _multistatus([xml.response(target.href(), [(200, names)])])

    # ----- locks -----
    async def do_lock(self, request: web.Request, user: str) -> web.Response:
        target = await self.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root:
            raise DavError(403, "/dav/ itself cannot be locked; lock something in a folder")
        body = xml.parse(await _small_body(request))
        timeout = clamp_timeout(request.headers.get("Timeout"))
        if body is None:  # a refresh: the If header names the lock
            tokens = submitted_tokens(parse_if(request.headers.get("If")))
            for token in tokens:
                lock = await self.locks.get(token)
                if lock and lock.folder_id == target.folder.id and lock.covers(target.key):
                    if lock.user_id != user:
                        raise DavError(403, "that lock is someone else's")
                    lock = await self.locks.refresh(lock, timeout)
                    return _lock_answer(200, self.lockdiscovery(target, [lock]))
            raise DavError(
                412,
                "refreshing a lock needs its token in the If header",
                xml.error_body("lock-token-matches-request-uri"),
            )
        if body.tag != f"{{{xml.DAV}}}lockinfo":
            raise xml.BadXml("the LOCK body must be a DAV:lockinfo element")
        scope = body.find(f"{{{xml.DAV}}}lockscope")
        exclusive = scope is None or scope.find(f"{{{xml.DAV}}}shared") is None
        owner = body.find(f"{{{xml.DAV}}}owner")
        if owner is not None:
            owner.tail = None
        depth = request.headers.get("Depth", "infinity").strip().lower()
        if depth not in ("0", "infinity"):
            raise DavError(400, "a LOCK's Depth must be 0 or infinity")
        deep = depth == "infinity" and (target.node is None or target.node.is_dir)
        tokens = await self.check_if(request, user, target)
        for lock in await self.locks.in_folder(target.folder.id):
            overlaps = lock.covers(target.key) or (deep and lock.is_below(target.key))
            if overlaps and (lock.exclusive or exclusive):
                raise DavError(
                    423,
                    f"{target.where} is locked already",
                    xml.error_body("no-conflicting-lock", [target.href()]),
                )
        created = target.node is None
        if created:  # locking an unmapped URL makes an empty file (RFC 4918 7.3)
            await self.parent_of(target)
            await self.check_locks(user, target, tokens, member_change=True)
            target.node, _ = await self.drive.upload(
                user, target.folder, "/".join(target.rel), _nothing()
            )
        lock = await self.locks.create(
            target.folder.id,
            "/".join(target.rel),
            target.key,
            depth_infinity=deep,
            exclusive=exclusive,
            owner_xml=xml.element_text(owner) if owner is not None else None,
            user_id=user,
            timeout_seconds=timeout,
        )
        answer = _lock_answer(201 if created else 200, self.lockdiscovery(target, [lock]))
        answer.headers["Lock-Token"] = f"<{lock.token}>"
        return answer

    async def do_unlock(self, request: web.Request, user: str) -> web.Response:
        target = await self.locate(user, request.rel_url.raw_path)
        token = request.headers.get("Lock-Token", "").strip().removeprefix("<").removesuffix(">")
        if not token:
            raise DavError(400, "UNLOCK needs a Lock-Token header")
        lock = await self.locks.get(token)
        if (
            lock is None
            or target.folder is None
            or lock.folder_id != target.folder.id
            or not lock.covers(target.key)
        ):
            raise DavError(
                409,
                "no such lock on this resource",
                xml.error_body("lock-token-matches-request-uri"),
            )
        if lock.user_id != user:
            raise Denied("that lock is someone else's; only they can remove it")
        await self.locks.remove(token)
        return web.Response(status=204)


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


def _multistatus(responses: list[str]) -> web.Response:
    return web.Response(
        status=207, body=xml.multistatus(responses), content_type="application/xml",
        charset="utf-8",
    )  # fmt: skip


def _lock_answer(status: int, discovery: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:">{discovery}</D:prop>'
    ).encode()
    return web.Response(status=status, body=body, content_type="application/xml", charset="utf-8")


async def _small_body(request: web.Request) -> bytes:
    if request.content_length and request.content_length > xml.MAX_BODY:
        raise DavError(413, f"a WebDAV XML body may have at most {xml.MAX_BODY} bytes")
    body = await request.content.read(xml.MAX_BODY + 1)
    if len(body) > xml.MAX_BODY:
        raise DavError(413, f"a WebDAV XML body may have at most {xml.MAX_BODY} bytes")
    return body


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return request.content.iter_chunked(UPLOAD_CHUNK)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
