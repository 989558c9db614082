"""The runtime's side of the services plugins get (their contract: bridge/api.py).

Each is built by the runtime from what it owns (the config, the database, the HTTP
session, the plugin manager) and holds only what it needs; the secrets stay here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from .api import BadSignature, BridgeInfo, MediaError
from .commands import LEVELS, level_for

if TYPE_CHECKING:
    from mautrix.util.async_db import Database

    from .commands import Command
    from .config import Config

MEDIA_CONFIG_SECONDS = 300.0
#: The shared session's default: no total limit (a large file may take long), but a
#: server that stops answering is given up on instead of waited for forever.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


def bridge_info(config: Config) -> BridgeInfo:
    return BridgeInfo(
        bot_user_id=config.bot_mxid,
        homeserver_url=config["homeserver.url"],
        homeserver_domain=config["homeserver.domain"],
        command_prefix=config["bridge.command_prefix"],
        bridge_url=f"http://{config['appservice.hostname']}:{config['appservice.port']}",
        data_dir=config.data_dir,
        ghost_prefix=config["appservice.ghost_prefix"],
    )


class Permissions:
    """Permission levels from ``bridge.permissions``; a command's level as the router
    applies it (its own, or ``bridge.command_levels``)."""

    def __init__(
        self, permissions: Mapping[str, str], commands: Callable[[], Mapping[str, Command]]
    ) -> None:
        self._permissions = dict(permissions)
        self._commands = commands

    def level(self, user_id: str) -> int:
        return level_for(user_id, self._permissions)

    def level_name(self, user_id: str) -> str:
        level = self.level(user_id)
        return next((name for name, value in LEVELS.items() if value == level), "none")

    def at_least(self, user_id: str, level: str) -> bool:
        if level not in LEVELS:
            raise ValueError(f"unknown permission level {level!r}: one of {', '.join(LEVELS)}")
        return self.level(user_id) >= LEVELS[level]

    def command_level(self, command: str) -> str:
        known = self._commands().get(command)
        return known.level if known is not None else "user"


class Signer:
    """HMAC-SHA256 signatures under a key derived per purpose from the bridge's secret.

    The key of a purpose is ``sha256(purpose | secret)``: the drive's links signed
    before this service existed (purpose ``drive-links``) still verify."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _key(self, purpose: str) -> bytes:
        if not purpose or "|" in purpose:
            raise ValueError(f"a signing purpose is a non-empty name without '|': {purpose!r}")
        return hashlib.sha256(purpose.encode() + b"|" + self._secret).digest()

    def signature(self, message: str, purpose: str) -> str:
        return hmac.new(self._key(purpose), message.encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, message: str, purpose: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(message, purpose), str(signature))

    def sign(self, value: Any, purpose: str) -> str:
        body = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{encoded}.{self.signature(encoded, purpose)}"

    def unsign(self, token: str, purpose: str) -> Any:
        encoded, dot, signature = str(token).rpartition(".")
        if not dot or not self.verify(encoded, purpose, signature):
            raise BadSignature(f"the signed value is not valid for {purpose!r}")
        try:
            return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        except ValueError as exc:  # signed by us, so only a bug gets here
            raise BadSignature(f"the signed value cannot be read: {exc}") from exc


class DirectChats:
    """The bot's direct chats, as the core plugin records them (table ``bot_room``)."""

    def __init__(self, db: Callable[[], Database | None]) -> None:
        self._db = db

    def _database(self) -> Database:
        db = self._db()
        if db is None:
            raise RuntimeError("the bridge has not started: no database yet")
        return db

    async def is_direct(self, room_id: str) -> bool:
        value = await self._database().fetchval(
            "SELECT is_direct FROM bot_room WHERE room_id = $1", room_id
        )
        return bool(value)

    async def direct_chat_with(self, user_id: str) -> str | None:
        return await self._database().fetchval(
            "SELECT room_id FROM bot_room WHERE is_direct AND dm_user = $1", user_id
        )


class Media:
    """The homeserver's media repository, authenticated as the bot."""

    def __init__(
        self,
        homeserver_url: str,
        token: str,
        session: Callable[[], aiohttp.ClientSession | None],
    ) -> None:
        self._homeserver = homeserver_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session
        self._upload_limit: tuple[int | None, float] | None = None

    def _http(self) -> aiohttp.ClientSession:
        session = self._session()
        if session is None:
            raise RuntimeError("the bridge has not started: no HTTP session yet")
        return session

    async def download(self, mxc: str) -> AsyncIterator[bytes]:
        if not isinstance(mxc, str) or not mxc.startswith("mxc://"):
            raise MediaError(f"{mxc!r} is not an mxc:// URL", 400)
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        url = (
            f"{self._homeserver}/_matrix/client/v1/media/download/"
            f"{quote(server)}/{quote(media_id)}?allow_redirect=true"
        )
        async with self._http().get(url, headers=self._headers) as resp:
            if resp.status >= 500:
                raise MediaError(
                    f"the homeserver could not give the file ({resp.status})", resp.status
                )
            if resp.status != 200:
                raise MediaError(
                    f"the homeserver did not give the file ({resp.status})", resp.status
                )
            async for chunk in resp.content.iter_chunked(1 << 20):
                yield chunk

    async def upload_limit(self) -> int | None:
        if self._upload_limit and self._upload_limit[1] > time.monotonic():
            return self._upload_limit[0]
        limit = None
        try:
            async with self._http().get(
                f"{self._homeserver}/_matrix/client/v1/media/config", headers=self._headers
            ) as resp:
                if resp.status == 200:
                    limit = (await resp.json()).get("m.upload.size")
        except aiohttp.ClientError:
            limit = None
        self._upload_limit = (limit, time.monotonic() + MEDIA_CONFIG_SECONDS)
        return limit


class Extensions:
    """Contributions to extension hooks, through the plugin manager's one helper
    (``PluginManager.collect``, handed in as ``collect``)."""

    def __init__(self, collect: Callable[..., dict[str, tuple[str, Any]]]) -> None:
        self._collect = collect

    def collect(
        self,
        hook_name: str,
        what: str,
        taken: dict[str, str] | None = None,
        *,
        key: Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> dict[str, tuple[str, Any]]:
        return self._collect(hook_name, what, taken, key=key, **kwargs)
