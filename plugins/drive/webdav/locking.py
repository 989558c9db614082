"""WebDAV class 2: the If header's conditions, the locks a write must hold the tokens
of, and LOCK and UNLOCK (RFC 4918 sections 6, 7, 9.10, 9.11, 10.4). The locks are rows
of the bridge's database (:class:`~.state.DavLocks`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import Denied, DriveError
from ..http_common import etag
from ..names import InvalidName
from . import xml
from .answers import DavError, small_body
from .conditions import IfList, parse_if, submitted_tokens
from .resources import Resources, Target
from .state import DavLocks, Lock, clamp_timeout

if TYPE_CHECKING:
    from ..service import Drive

SUPPORTED_LOCK = (
    "<D:supportedlock>"
    + "".join(
        f"<D:lockentry><D:lockscope><D:{s}/></D:lockscope><D:locktype><D:write/></D:locktype>"
        "</D:lockentry>"
        for s in ("exclusive", "shared")
    )
    + "</D:supportedlock>"
)


class Locking:
    def __init__(self, locks: DavLocks, resources: Resources, drive: Drive) -> None:
        self.locks = locks
        self.resources = resources
        self.drive = drive

    # ----- conditions -----
    async def check_if(self, request: web.Request, user: str, target: Target) -> set[str]:
        """Evaluate the If header (412 when no list holds); return the tokens it submits."""
        lists = parse_if(request.headers.get("If"))
        if not lists:
            return set()
        for lst in lists:
            about = target
            if lst.resource is not None:
                try:
                    about = await self.resources.locate(
                        user, urlsplit(lst.resource).path, client_url=True
                    )
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

    async def forget_at(self, target: Target) -> None:
        """Locks do not follow a resource that is deleted or moved away."""
        await self.locks.remove_at(target.folder.id, target.key)

    # ----- what PROPFIND shows -----
    async def active_in(self, target: Target) -> list[Lock]:
        return await self.locks.in_folder(target.folder.id) if target.folder is not None else []

    def discovery(self, target: Target, locks: list[Lock]) -> str:
        """``<D:lockdiscovery>`` of ``target`` among the folder's ``locks``."""
        active = "".join(self._active(target, lk) for lk in locks if lk.covers(target.key))
        return f"<D:lockdiscovery>{active}</D:lockdiscovery>"

    def _active(self, target: Target, lock: Lock) -> str:
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

    # ----- LOCK and UNLOCK -----
    async def lock(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path, write=True)
        if target.is_root:
            raise DavError(403, "/dav/ itself cannot be locked; lock something in a folder")
        body = xml.parse(await small_body(request))
        timeout = clamp_timeout(request.headers.get("Timeout"))
        if body is None:  # a refresh: the If header names the lock
            for token in submitted_tokens(parse_if(request.headers.get("If"))):
                lock = await self.locks.get(token)
                if lock and lock.folder_id == target.folder.id and lock.covers(target.key):
                    if lock.user_id != user:
                        raise DavError(403, "that lock is someone else's")
                    lock = await self.locks.refresh(lock, timeout)
                    return _lock_answer(200, self.discovery(target, [lock]))
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
            await self.resources.parent_of(target)
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
        answer = _lock_answer(201 if created else 200, self.discovery(target, [lock]))
        answer.headers["Lock-Token"] = f"<{lock.token}>"
        return answer

    async def unlock(self, request: web.Request, user: str) -> web.Response:
        target = await self.resources.locate(user, request.rel_url.raw_path)
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


def _lock_answer(status: int, discovery: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:">{discovery}</D:prop>'
    ).encode()
    return web.Response(status=status, body=body, content_type="application/xml", charset="utf-8")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
