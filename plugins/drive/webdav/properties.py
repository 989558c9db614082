"""PROPFIND and PROPPATCH: live properties from the drive (size, type, ETag, dates,
locks, the folder owner's quota) and dead properties a client sets, kept in the bridge's
database (:class:`~.state.DeadProperties`)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from ..http_common import etag
from . import xml
from .answers import DavError, multistatus, small_body
from .locking import SUPPORTED_LOCK, Locking
from .resources import Resources, Target
from .state import DeadProperties, Lock

if TYPE_CHECKING:
    from ..service import Drive

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


class Properties:
    def __init__(
        self, dead: DeadProperties, resources: Resources, locking: Locking, drive: Drive
    ) -> None:
        self.dead = dead
        self.resources = resources
        self.locking = locking
        self.drive = drive

    async def propfind(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path)
        if not target.is_root and target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        depth = request.headers.get("Depth", "infinity").strip().lower()
        if depth not in ("0", "1"):
            raise DavError(
                403,
                "Depth: infinity is not served; ask with Depth: 1, folder by folder",
                xml.error_body("propfind-finite-depth"),
            )
        body = xml.parse(await small_body(request))
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
            entries += await self.resources.children(user, target)
        locks = await self.locking.active_in(target)
        quota = await self.drive.quota(target.folder.owner if target.folder else user)
        responses = []
        for entry, is_dir in entries:
            live = self.live(entry, is_dir, locks)
            if is_dir:  # RFC 4331, asked for by name only: the folder owner's quota
                live["quota-available-bytes"] = (
                    f"<D:quota-available-bytes>{quota.free}</D:quota-available-bytes>"
                )
                live["quota-used-bytes"] = f"<D:quota-used-bytes>{quota.used}</D:quota-used-bytes>"
            dead = await self.dead.of(entry.node.id) if entry.node is not None else {}
            found: list[str] = []
            missing: list[str] = []
            if mode == "propname":
                found = [xml.empty_element(xml.DAV, n) for n in live]
                found += [xml.empty_element(ns, n) for ns, n in dead]
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
        return multistatus(responses)

    def live(self, target: Target, is_dir: bool, locks: list[Lock]) -> dict[str, str]:
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
            props["lockdiscovery"] = self.locking.discovery(target, locks)
        return props

    async def proppatch(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root:
            raise DavError(403, "/dav/ itself has no properties to change")
        if target.node is None:
            raise DavError(404, f"nothing at {target.where}")
        tokens = await self.locking.check_if(request, user, target)
        await self.locking.check_locks(user, target, tokens)
        body = xml.parse(await small_body(request))
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
        names = [xml.empty_element(ns, n) for ns, n, _ in changes]
        protected = [
            xml.empty_element(ns, n) for ns, n, _ in changes if ns == xml.DAV and n in LIVE
        ]
        if protected:  # all or nothing (RFC 4918 9.2)
            others = [e for e in names if e not in protected]
            return multistatus([xml.response(target.href(), [(403, protected), (424, others)])])
        kept = set(await self.dead.of(target.node.id))
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
            return multistatus([xml.response(target.href(), [(507, failed), (424, others)], why)])
        await self.dead.apply(target.node.id, changes)
        return multistatus([xml.response(target.href(), [(200, names)])])


def _http_date(ms: int) -> str:
    return email.utils.formatdate(ms / 1000, usegmt=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
