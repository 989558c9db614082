"""What a URL under ``/dav/`` names for a person: the root (their accepted folders, by
name), one of those folders, or a path inside one — existing or not yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web

from ..errors import NotFound
from ..model import Folder, Node
from ..names import check_name, name_key
from .answers import DavError
from .state import path_key

if TYPE_CHECKING:
    from ..service import Drive

ROOT = "/dav"


@dataclass
class Target:
    """A resource under /dav/ as one person sees it."""

    names: list[str]  # decoded URL segments after /dav/
    base: str = ROOT  # /dav as clients see it (behind a proxy: its prefix first)
    folder: Folder | None = None
    display: str = ""  # the folder's name in this person's /dav/
    rel: list[str] = field(default_factory=list)  # the path inside the folder
    node: Node | None = None  # None: nothing there (yet)

    @property
    def key(self) -> str:
        return path_key(self.rel)

    @property
    def is_root(self) -> bool:
        return self.folder is None

    @property
    def parent_key(self) -> str:
        return path_key(self.rel[:-1])

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
        return "/".join([self.display, *self.rel])


def split_url(raw_path: str, base: str = ROOT) -> list[str]:
    """The decoded segments of a raw URL path under ``base`` (``%2F`` stays inside one)."""
    if raw_path != base and not raw_path.startswith(base + "/"):
        raise DavError(502, f"{raw_path} is not under {base}/ on this server")
    return [unquote(p) for p in raw_path[len(base) :].split("/") if p]


class Resources:
    def __init__(self, drive: Drive) -> None:
        self.drive = drive

    @property
    def public(self) -> tuple[str, str]:
        """``(host, /dav path)`` as clients see them through ``public_url`` (a proxy may
        serve the bridge under a path prefix, which it strips); ``("", "/dav")`` without."""
        url = urlsplit(self.drive.settings.public_url or "")
        return url.netloc, url.path.rstrip("/") + ROOT

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
        """What ``raw_path`` names, checking the person's access (``write``: to change
        it): a request's path (``/dav/...``), or with ``client_url`` a URL path a client
        wrote (Destination, If), which may carry the public prefix."""
        base = self.public[1]
        names = split_url(raw_path, base if client_url and raw_path.startswith(base) else ROOT)
        target = Target(names, base=base)
        if not names:
            return target
        entry = (await self.folders(user)).get(name_key(names[0]))
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
        """Where a COPY or MOVE goes (its ``Destination``), inside one of the person's
        folders; another server's URL is 502."""
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

    async def children(self, user: str, target: Target) -> list[tuple[Target, bool]]:
        """What a collection holds, each with whether it is a collection: for the root,
        the folders the person has accepted."""
        if target.is_root:
            return [
                (Target([name], target.base, folder, name), True)
                for folder, name, state in (await self.folders(user)).values()
                if state == "joined"
            ]
        out = []
        for node in await self.drive.tree.children(target.node):
            child = Target(
                [*target.names, node.name], target.base, target.folder, target.display,
                [*target.rel, node.name], node,
            )  # fmt: skip
            out.append((child, node.is_dir))
        return out
