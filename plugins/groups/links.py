"""Fetching files that network messages link to, without letting a remote person steer
the bridge at anything else.

A link is fetched only when it is under one of the connector's allowed prefixes,
compared part by part (scheme, host, port, then the path below the prefix's folder),
never by string prefix — ``https://up.example.org@internal/`` is not under
``https://up.example.org``. Redirects are followed only within the same scheme, host
and port and under an allowed prefix. Addresses that are not public (loopback, private,
link-local, …) are refused, for literal IPs and for every address a name resolves to at
connection time, unless ``plugins.settings.groups.fetch_private_addresses`` is set.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .connector import FileData

MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Place:
    """A URL cut into what is compared: scheme, host, port, path."""

    scheme: str
    host: str
    port: int
    path: str

    def same_origin(self, other: Place) -> bool:
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)


class BadLink(ValueError):
    """A URL that is not a plain http(s) URL (says why)."""


def place(url: str) -> Place:
    """Parse ``url``; :class:`BadLink` for anything but a plain http(s) URL with a host
    (no user or password part, no ``.``/``..`` path segments)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise BadLink(f"not an http or https URL: {url!r}")
    if "@" in parts.netloc:
        raise BadLink(f"a URL with a user or password part: {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise BadLink(f"a bad port in {url!r}") from exc
    if not parts.hostname:
        raise BadLink(f"no host in {url!r}")
    path = parts.path or "/"
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise BadLink(f"a path with . or .. in {url!r}")
    return Place(parts.scheme, parts.hostname.lower().rstrip("."), port, path)


def prefix_place(prefix: str) -> Place:
    """An allowed prefix: its path is a folder (``/file_share`` means ``/file_share/``)."""
    found = place(prefix)
    if not found.path.endswith("/"):
        found = Place(found.scheme, found.host, found.port, found.path + "/")
    return found


def is_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether ``url`` is under one of ``prefixes`` (scheme, host and port equal, the path
    below the prefix's folder)."""
    try:
        target = place(url)
    except BadLink:
        return False
    for prefix in prefixes:
        allowed = prefix_place(prefix)
        if allowed.same_origin(target) and target.path.startswith(allowed.path):
            return True
    return False


def is_public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


class PublicOnlyResolver(AbstractResolver):
    """Resolves names, keeping only public addresses (checked where the connection is
    made, so a name cannot resolve to a public address for a check and a private one for
    the connection)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        resolved = await self._resolver.resolve(host, port, family)
        found = [address for address in resolved if is_public(address["host"])]
        if not found:
            raise OSError(f"{host} has no public address; the bridge fetches only from those")
        return found

    async def close(self) -> None:
        await self._resolver.close()


class LinkFetcher:
    """Downloads linked files (size-capped) through its own HTTP session, whose resolver
    refuses non-public addresses unless ``allow_private``."""

    def __init__(self, max_bytes: int, allow_private: bool, log: Any) -> None:
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.log = log
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.allow_private else PublicOnlyResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver),
                timeout=aiohttp.ClientTimeout(total=60, sock_read=30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _refusal(self, url: str, prefixes: list[str]) -> str | None:
        """Why ``url`` may not be fetched, or None."""
        if not is_allowed(url, prefixes):
            return "not under an allowed prefix"
        host = place(url).host
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None  # a name: the resolver checks its addresses
        if not literal.is_global and not self.allow_private:
            return "not a public address"
        return None

    async def fetch(self, url: str, prefixes: list[str]) -> FileData | None:
        """The file at ``url`` if it may be fetched (see the module's docstring) and is
        small enough; None otherwise (the link then stays a link)."""
        current = url.strip()
        for _ in range(MAX_REDIRECTS + 1):
            why = self._refusal(current, prefixes)
            if why:
                self.log.info("a linked file was not fetched", url=current, why=why)
                return None
            try:
                async with self._client().get(current, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        target = urljoin(current, resp.headers.get("Location", ""))
                        if not place(target).same_origin(place(current)):
                            self.log.info(
                                "a linked file was not fetched",
                                url=current,
                                why=f"it redirects to another host ({target})",
                            )
                            return None
                        current = target
                        continue
                    return await self._read(current, resp)
            except (aiohttp.ClientError, TimeoutError, OSError, BadLink) as exc:
                self.log.warning("could not fetch a linked file", url=current, error=str(exc))
                return None
        self.log.info("a linked file was not fetched", url=url, why="too many redirects")
        return None

    async def _read(self, url: str, resp: aiohttp.ClientResponse) -> FileData | None:
        if resp.status != 200 or (resp.content_length or 0) > self.max_bytes:
            return None
        data = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            data.extend(chunk)
            if len(data) > self.max_bytes:
                return None
        mimetype = resp.content_type or "application/octet-stream"
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "file"
        return FileData(name, mimetype, bytes(data))
