"""Ghost users: one Matrix user per remote person, in the bridge's exclusive namespace
(``@{ghost_prefix}{network}_{escaped remote id}:{domain}``), with their display name."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mautrix.errors import MatrixRequestError

from .connector import FileData, RemoteUser
from .limits import RemoteLimits, address_and_domain

if TYPE_CHECKING:
    from mautrix.appservice import IntentAPI

    from anywhere.bridge.runtime import Bridge

_SAFE = re.compile(r"[a-z0-9._-]")
MAX_DISPLAYNAME = 100


def escape(remote_id: str) -> str:
    """A Matrix localpart for any remote ID, reversible: characters other than
    ``a-z 0-9 . _ -`` become ``=`` and their UTF-8 bytes in hex."""
    out = []
    for char in remote_id:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.append("".join(f"={byte:02x}" for byte in char.encode()))
    return "".join(out)


def unescape(localpart: str) -> str:
    data = bytearray()
    i = 0
    while i < len(localpart):
        if localpart[i] == "=":
            data.append(int(localpart[i + 1 : i + 3], 16))
            i += 3
        else:
            data.extend(localpart[i].encode())
            i += 1
    return data.decode()


def clean_name(name: str, fallback: str) -> str:
    """A display name without control characters, of reasonable length."""
    cleaned = "".join(c for c in name if c.isprintable()).strip()
    return (cleaned or fallback)[:MAX_DISPLAYNAME]


def ghost_name(name: str, fallback: str, network: str) -> str:
    """A ghost's display name: the person's, marked with their network (``Ana (XMPP)``),
    so that a remote person never shows as one of the local people they name themselves
    after."""
    mark = f" ({network.upper()})"
    return clean_name(name, fallback)[: MAX_DISPLAYNAME - len(mark)] + mark


class Ghosts:
    def __init__(self, bridge: Bridge, limits: RemoteLimits) -> None:
        self.bridge = bridge
        self.limits = limits
        self.prefix = bridge.config["appservice.ghost_prefix"]
        self.domain = bridge.config["homeserver.domain"]
        self._names: dict[str, str | None] = {}

    def user_id(self, network: str, remote_id: str) -> str:
        return f"@{self.prefix}{network}_{escape(remote_id)}:{self.domain}"

    def parse(self, user_id: str, networks: list[str]) -> tuple[str, str] | None:
        """``(network, remote_id)`` of one of our ghost IDs, or None."""
        localpart, _, server = user_id.removeprefix("@").partition(":")
        if server != self.domain or not localpart.startswith(self.prefix):
            return None
        rest = localpart[len(self.prefix) :]
        network, _, escaped = rest.partition("_")
        if network not in networks or not escaped:
            return None
        try:
            return network, unescape(escaped)
        except (ValueError, UnicodeDecodeError):
            return None

    async def ensure(self, network: str, user: RemoteUser, *, rename: bool = True) -> IntentAPI:
        """The ghost's intent, registered, with the person's current display name
        (``rename=False``: only if it has none yet). A new ghost counts against its
        remote address's and domain's limits: :class:`Refused` when one is reached."""
        user_id = self.user_id(network, user.id)
        intent = self.bridge.intent(user_id)
        name = ghost_name(user.name, user.id, network)
        if user_id not in self._names:
            row = await self.bridge.db.fetchrow(
                "SELECT displayname FROM groups_ghost WHERE user_id = $1", user_id
            )
            if row is None:
                await self._add(network, user.id, user_id)
            self._names[user_id] = row["displayname"] if row else None
            await intent.ensure_registered()
        if self._names[user_id] != name and (rename or self._names[user_id] is None):
            try:
                await intent.set_displayname(name)
            except MatrixRequestError as exc:
                self.bridge.log.warning(
                    "could not set a ghost's name", user_id=user_id, error=str(exc)
                )
            await self.bridge.db.execute(
                "INSERT INTO groups_ghost (user_id, network, remote_id, displayname) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET displayname = $4",
                user_id,
                network,
                user.id,
                name,
            )
            self._names[user_id] = name
        return intent

    async def _add(self, network: str, remote_id: str, user_id: str) -> None:
        """Count a new ghost (refused past the limits) and keep its row."""
        address, domain = address_and_domain(remote_id)
        counts = []
        for column, value in (("address", address), ("domain", domain)):
            counts.append(
                await self.bridge.db.fetchval(
                    f"SELECT count(*) FROM groups_ghost WHERE network = $1 AND {column} = $2",
                    network,
                    value,
                )
            )
        self.limits.check("ghosts", remote_id, (counts[0], counts[1]))
        await self.bridge.db.execute(
            "INSERT INTO groups_ghost (user_id, network, remote_id, address, domain) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
            user_id,
            network,
            remote_id,
            address,
            domain,
        )

    async def upload_file(self, intent: IntentAPI, room_id: str, file: FileData) -> dict[str, Any]:
        """Upload ``file`` as the ghost ``intent`` to post into ``room_id``: the content
        fields pointing at it, ``{"url": mxc}`` or, in an encrypted room, ``{"file": ...}``
        (the attachment encrypted on the way, as Element does)."""
        return await self.bridge.media.upload(
            room_id,
            file.data,
            intent=intent,
            mime_type=file.mimetype,
            filename=file.name,
            size=len(file.data),
        )

    async def set_avatar(
        self,
        network: str,
        user: RemoteUser,
        avatar_hash: str,
        fetch: Callable[[], Awaitable[FileData | None]],
    ) -> bool:
        """Give the ghost the person's avatar, identified on the network by
        ``avatar_hash``; ``fetch`` is called (and the picture uploaded to the media
        repository) only when the hash differs from the one last set. True if changed."""
        user_id = self.user_id(network, user.id)
        known = await self.bridge.db.fetchval(
            "SELECT avatar_hash FROM groups_ghost WHERE user_id = $1", user_id
        )
        if known == avatar_hash:
            return False
        intent = await self.ensure(network, user, rename=False)
        data = await fetch()
        if data is None or not data.mimetype.startswith("image/"):
            return False
        mxc = await intent.upload_media(data.data, data.mimetype, data.name)
        await intent.set_avatar_url(mxc)
        await self.bridge.db.execute(
            "INSERT INTO groups_ghost (user_id, network, remote_id, avatar_hash) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET avatar_hash = $4",
            user_id,
            network,
            user.id,
            avatar_hash,
        )
        return True
