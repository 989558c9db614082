"""The runtime's side of the services plugins get (their contract: bridge/api.py).

Each is built by the runtime from what it owns (the config, the database, the HTTP
session, the plugin manager) and holds only what it needs; the secrets stay here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import structlog
from mautrix.types import RoomCreatePreset

from .api import BadSignature, BridgeInfo, MediaError
from .commands import LEVELS, level_for
from .crypto.attachments import AttachmentError, EncryptedFile, Encryptor, decrypt

if TYPE_CHECKING:
    from mautrix.appservice import IntentAPI
    from mautrix.util.async_db import Database

    from .commands import Command
    from .config import Config

MEDIA_CONFIG_SECONDS = 300.0
log = structlog.get_logger("anywhere.media")
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
        config_dir=config.base_dir,
    )


def keys_kept_from_before(config: Config) -> dict[str, bytes]:
    """Keys that plugins derived from a token themselves before ``bridge.signer`` existed,
    by the purpose they now ask :meth:`Signer.key` for, so that what was hashed with them
    keeps verifying: the policy plugin's key for phone numbers and codes when
    ``verification.salt`` is empty was ``sha256("anywhere-verification:" + hs_token)``."""
    legacy = "anywhere-verification:" + config["appservice.hs_token"]
    return {"anywhere.policy.verification": hashlib.sha256(legacy.encode()).digest()}


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
    before this service existed (purpose ``drive-links``) still verify. :meth:`key` gives
    a different key for the same purpose (an HMAC of it under the secret), or the one
    ``kept`` from before for that purpose (:func:`keys_kept_from_before`)."""

    def __init__(self, secret: str, kept: Mapping[str, bytes] | None = None) -> None:
        self._secret = secret.encode()
        self._kept = dict(kept or {})

    def key(self, purpose: str) -> bytes:
        kept = self._kept.get(purpose)
        if kept is not None:
            return kept
        self._key(purpose)  # the same check of the purpose
        return hmac.new(self._secret, b"key|" + purpose.encode(), hashlib.sha256).digest()

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

    def __init__(
        self,
        db: Callable[[], Database | None],
        bot: Callable[[], IntentAPI] | None = None,
        room_name: str = "",
    ) -> None:
        self._db = db
        self._bot = bot
        self._room_name = room_name

    def _database(self) -> Database:
        db = self._db()
        if db is None:
            raise RuntimeError("the bridge has not started: no database yet")
        return db

    async def is_direct(self, room_id: str, with_user: str | None = None) -> bool:
        row = await self._database().fetchrow(
            "SELECT is_direct, dm_user FROM bot_room WHERE room_id = $1", room_id
        )
        if row is None or not row["is_direct"]:
            return False
        return with_user is None or row["dm_user"] == with_user

    async def direct_chat_with(self, user_id: str) -> str | None:
        return await self._database().fetchval(
            "SELECT room_id FROM bot_room WHERE is_direct AND dm_user = $1", user_id
        )

    async def open_with(self, user_id: str) -> str:
        existing = await self.direct_chat_with(user_id)
        if existing:
            return existing
        if self._bot is None:
            raise RuntimeError("the bridge has not started: no bot yet")
        room_id = await self._bot().create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[user_id],
            name=self._room_name or None,
        )
        # recorded as the core plugin records a direct chat it is invited to
        await self._database().execute(
            "INSERT INTO bot_room (room_id, is_direct, dm_user) VALUES ($1, TRUE, $2) "
            "ON CONFLICT (room_id) DO UPDATE SET is_direct = TRUE, dm_user = excluded.dm_user",
            room_id,
            user_id,
        )
        return room_id


class Media:
    """The homeserver's media repository, authenticated as the bot. Attachments of
    encrypted rooms are decrypted on the way in and encrypted on the way out
    (:mod:`anywhere.bridge.crypto.attachments`), so plugins handle plain bytes everywhere."""

    def __init__(
        self,
        homeserver_url: str,
        token: str,
        session: Callable[[], aiohttp.ClientSession | None],
        is_encrypted: Callable[[str, str | None], Awaitable[bool]] | None = None,
    ) -> None:
        self._homeserver = homeserver_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session
        self._is_encrypted = is_encrypted
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

    async def download_content(self, content: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The plain bytes of a file message: its ``file`` (encrypted: decrypted, the hash
        checked before the last chunk is given) or its ``url``."""
        if "file" not in content:
            async for chunk in self.download(content.get("url")):  # type: ignore[arg-type]
                yield chunk
            return
        try:
            file = EncryptedFile.parse(content["file"])
        except AttachmentError as exc:
            log.warning("encrypted file refused", reason=str(exc))
            raise MediaError(f"I can't open this encrypted file: {exc}", 400) from exc
        try:
            async for chunk in decrypt(self.download(file.url), file):
                yield chunk
        except AttachmentError as exc:
            log.warning("encrypted file refused", url=file.url, reason=str(exc))
            raise MediaError(str(exc), 422) from exc

    async def upload(
        self,
        room_id: str,
        data: bytes | AsyncIterable[bytes],
        *,
        intent: IntentAPI,
        mime_type: str | None = None,
        filename: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Upload a file to post into ``room_id`` as ``intent``; the content fields that
        point at it: ``{"url": mxc}``, or ``{"file": EncryptedFile}`` in an encrypted room
        (the ciphertext uploaded, streamed, without its name or type)."""
        if size is None and isinstance(data, bytes | bytearray):
            size = len(data)
        # asked as the uploader: the bot may not be in the room (a memo user's DM)
        uploader = getattr(intent, "mxid", None)
        if self._is_encrypted is not None and await self._is_encrypted(room_id, uploader):
            encryptor = Encryptor()
            mxc = await intent.upload_media(
                encryptor.encrypt(data), mime_type="application/octet-stream", size=size
            )
            return {"file": encryptor.file(str(mxc))}
        mxc = await intent.upload_media(data, mime_type=mime_type, filename=filename, size=size)
        return {"url": str(mxc)}

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
    (``PluginManager.collect``, handed in as ``collect``) and its per-plugin calls
    (``PluginManager.acall_each``, as ``call_each``)."""

    def __init__(
        self,
        collect: Callable[..., dict[str, tuple[str, Any]]],
        call_each: Callable[..., Awaitable[list[tuple[str, Any]]]] | None = None,
    ) -> None:
        self._collect = collect
        self._call_each = call_each

    async def call(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        if self._call_each is None:
            raise RuntimeError("extension hooks cannot be called here")
        return await self._call_each(hook_name, **kwargs)

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
