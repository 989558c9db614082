"""The Matrix people of portal rooms as networks see them: display names and avatars
(from member events, else the room state), global profiles and avatar pictures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mautrix.types import EventType

from anywhere.bridge import MatrixEvent

from . import convert
from .connector import FileData, MatrixSender

if TYPE_CHECKING:
    from mautrix.appservice import IntentAPI

MAX_AVATAR_BYTES = 1024 * 1024


class MatrixPeople:
    """Given what it uses, not the hub: ``room_intent(room_id)``, who reads a portal
    room's state (the bot in groups, the ghost in a 1:1 chat); ``bot``, who reads
    profiles and downloads avatars; ``log``."""

    def __init__(self, room_intent: Callable[[str], IntentAPI], bot: IntentAPI, log: Any) -> None:
        self.room_intent = room_intent
        self.bot = bot
        self.log = log
        self._names: dict[tuple[str, str], str] = {}
        self._avatar_urls: dict[tuple[str, str], str | None] = {}
        self._avatar_files: dict[str, FileData | None] = {}  # mxc → the image

    def saw_member(self, event: MatrixEvent) -> None:
        """A member event of a portal room: the person's name and avatar there now."""
        name = event.content.get("displayname")
        if isinstance(name, str):
            self._names[(event.room_id, event.sender)] = name
        avatar = event.content.get("avatar_url")
        self._avatar_urls[(event.room_id, event.sender)] = (
            avatar if isinstance(avatar, str) and avatar.startswith("mxc://") else None
        )

    async def displayname(self, room_id: str, user_id: str) -> str:
        key = (room_id, user_id)
        if key not in self._names:
            name = avatar = None
            try:
                member = await self.room_intent(room_id).get_state_event(
                    room_id, EventType.ROOM_MEMBER, user_id
                )
                name, avatar = member.displayname, member.avatar_url
            except Exception as exc:
                self.log.warning("display name unknown", user_id=user_id, error=str(exc))
            self._names[key] = name or user_id.removeprefix("@").split(":")[0]
            if key not in self._avatar_urls:
                self._avatar_urls[key] = str(avatar) if avatar else None
        return self._names[key]

    async def sender(self, room_id: str, user_id: str) -> MatrixSender:
        """The Matrix person as the network sees them in this room: name and avatar."""
        name = await self.displayname(room_id, user_id)
        return MatrixSender(user_id, name, self._avatar_urls.get((room_id, user_id)))

    async def profile(self, user_id: str) -> MatrixSender | None:
        """A Matrix person's global profile (name and avatar), for a network asking about
        someone it has not seen in a portal room; None when the homeserver has none."""
        try:
            profile = await self.bot.get_profile(user_id)
        except Exception as exc:
            self.log.info("no profile for a Matrix person", user_id=user_id, error=str(exc))
            return None
        name = profile.displayname or user_id.removeprefix("@").split(":")[0]
        return MatrixSender(user_id, name, str(profile.avatar_url) if profile.avatar_url else None)

    async def avatar(self, mxc: str) -> FileData | None:
        """A Matrix person's avatar image (from the media repository, size-capped and
        checked to be an image), for networks that show avatars; None when it cannot be
        had. Remembered per mxc:// URL."""
        if mxc in self._avatar_files:
            return self._avatar_files[mxc]
        image = None
        try:
            data = await self.bot.download_media(mxc)
        except Exception as exc:
            self.log.info("could not fetch a Matrix avatar", mxc=mxc, error=str(exc))
            return None  # not remembered: it may work next time
        mimetype = convert.image_type(data) if len(data) <= MAX_AVATAR_BYTES else None
        if mimetype:
            image = FileData(f"avatar.{mimetype.split('/')[1]}", mimetype, data)
        if len(self._avatar_files) >= 1000:
            self._avatar_files.clear()
        self._avatar_files[mxc] = image
        return image
