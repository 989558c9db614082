"""Matrix events as plugins see them, and the context a handler acts through."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mautrix.types import EventType

if TYPE_CHECKING:
    from .api import Host


class MatrixEvent:
    """One event from a transaction, as the homeserver sent it (``raw``).

    Plugins parse ``content`` themselves; nothing is dropped or reinterpreted. One is made
    for every event the bridge receives, so it is a plain slotted class, not a dataclass.
    """

    __slots__ = ("raw", "txn_id", "ephemeral")

    def __init__(self, raw: dict[str, Any], txn_id: str = "", ephemeral: bool = False) -> None:
        self.raw = raw
        self.txn_id = txn_id
        self.ephemeral = ephemeral

    def __repr__(self) -> str:
        return f"MatrixEvent({self.raw!r}, txn_id={self.txn_id!r}, ephemeral={self.ephemeral!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MatrixEvent):
            return NotImplemented
        return (self.raw, self.txn_id, self.ephemeral) == (
            other.raw,
            other.txn_id,
            other.ephemeral,
        )

    __hash__ = None  # type: ignore[assignment]  # raw is a dict

    @property
    def type(self) -> str:
        return self.raw.get("type", "")

    @property
    def event_id(self) -> str:
        return self.raw.get("event_id", "")

    @property
    def room_id(self) -> str:
        return self.raw.get("room_id", "")

    @property
    def sender(self) -> str:
        return self.raw.get("sender", "")

    @property
    def state_key(self) -> str | None:
        return self.raw.get("state_key")

    @property
    def content(self) -> dict[str, Any]:
        content = self.raw.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def age_ms(self) -> int | None:
        unsigned = self.raw.get("unsigned")
        age = unsigned.get("age") if isinstance(unsigned, dict) else None
        return age if isinstance(age, int) else None


@dataclass(slots=True)
class EventContext:
    """What a handler gets besides the event: the bridge's services (``ctx.bridge``, a
    :class:`anywhere.bridge.api.Host`), and sends that are safe to repeat. Every send made through
    the context carries a transaction id derived from the event being handled, so
    handling the same event again after a crash does not post twice."""

    bridge: Host
    event: MatrixEvent
    plugin: str = ""
    _sends: int = field(default=0, init=False)

    @property
    def log(self):
        return self.bridge.log.bind(
            plugin=self.plugin, event_id=self.event.event_id, room_id=self.event.room_id
        )

    def next_txn_id(self) -> str:
        self._sends += 1
        seed = f"{self.plugin}|{self.event.event_id or self.event.raw}|{self._sends}"
        return "anywhere." + hashlib.sha256(seed.encode()).hexdigest()[:32]

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        *,
        as_user: str | None = None,
    ) -> str:
        intent = self.bridge.intent(as_user) if as_user else self.bridge.bot
        return await intent.send_message_event(
            room_id, EventType.find(event_type), content, txn_id=self.next_txn_id()
        )

    async def notice(self, room_id: str, text: str, html: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if html:
            content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        return await self.send(room_id, content)

    async def reply(self, text: str, html: str | None = None) -> str:
        """Answer in the event's room with a notice that replies to the event."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if html:
            content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        if self.event.event_id:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": self.event.event_id}}
        return await self.send(self.event.room_id, content)
