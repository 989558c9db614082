"""The bot's direct chats with people, where the policy plugin says what concerns only
them (refusals by the Synapse module, explanations that show their facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mautrix.types import RoomCreatePreset

if TYPE_CHECKING:
    from bridge.runtime import Bridge


class DirectChats:
    """Reads the runtime's record of the bot's rooms (``bot_room``: the direct chats the
    core plugin remembers) and opens a direct chat the way the core plugin does when
    there is none. A runtime service for this would be the better home."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def is_direct_with(self, room_id: str, user_id: str) -> bool:
        """Whether ``room_id`` is the bot's direct chat with ``user_id``."""
        row = await self.bridge.db.fetchrow(
            "SELECT is_direct, dm_user FROM bot_room WHERE room_id = $1", room_id
        )
        return bool(row and row["is_direct"] and row["dm_user"] == user_id)

    async def room_for(self, user_id: str) -> str:
        """The bot's direct chat with ``user_id``, opened if there is none."""
        db = self.bridge.db
        room_id = await db.fetchval(
            "SELECT room_id FROM bot_room WHERE is_direct AND dm_user = $1", user_id
        )
        if room_id:
            return room_id
        room_id = await self.bridge.bot.create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[user_id],
            name=self.bridge.config["appservice.bot.displayname"],
        )
        await db.execute(
            "INSERT INTO bot_room (room_id, is_direct, dm_user) VALUES ($1, TRUE, $2) "
            "ON CONFLICT (room_id) DO NOTHING",
            room_id,
            user_id,
        )
        return room_id
