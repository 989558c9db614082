"""The bot's direct chats with people, where the policy plugin says what concerns only
them (refusals by the Synapse module, explanations that show their facts), through the
runtime's ``bridge.direct_chats``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.api import DirectChats


class PrivateAnswers:
    """Where to tell a person what concerns only them."""

    def __init__(self, chats: DirectChats) -> None:
        self.chats = chats

    async def is_direct_with(self, room_id: str, user_id: str) -> bool:
        """Whether ``room_id`` is the bot's direct chat with ``user_id``."""
        return await self.chats.is_direct(room_id, with_user=user_id)

    async def room_for(self, user_id: str) -> str:
        """The bot's direct chat with ``user_id``, opened if there is none."""
        return await self.chats.open_with(user_id)
