"""What a call mode gets (docs/calls.md, "a mode of your own"): :class:`CallHost`, the
part of the calls plugin a mode may use, and :class:`ModeCall`, what it sees of its call.

The calls plugin's :class:`~anywhere.plugins.calls.manager.CallManager` is the host; a mode uses
these members and nothing else of it."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mautrix.appservice import IntentAPI

    from anywhere.bridge.events import EventContext

    from .mixer import Conference
    from .session import MediaSession
    from .state import Call


class ModeCall(Protocol):
    """A call with media, as its mode sees it."""

    #: the signalling state: ``room_id``, ``call_id``, ``our_user``, ``their_user``,
    #: ``mode``, ``key`` (a conference's room), ``options`` (the mode's, e.g. a memo's
    #: ``seconds``)
    call: Call
    #: the peer connection (``session.quality``: round-trip time, jitter, loss, packets)
    session: MediaSession | None
    #: when media started to flow (``time.monotonic()``), None before
    connected_at: float | None
    #: the context of the event that started the call (``ctx.log``)
    ctx: EventContext

    @property
    def key(self) -> str:
        """``room_id|call_id``: one call."""

    @property
    def duration(self) -> float:
        """Seconds since media started to flow (until the end)."""

    async def send(self, event_type: str, content: dict[str, Any], room_id: str = "") -> str:
        """Send an event as our side of the call (in its room unless ``room_id``)."""

    async def notice(self, text: str, room_id: str = "") -> str:
        """Send an ``m.notice`` as our side of the call."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` beside the call (cancelled when the call ends)."""


@runtime_checkable
class CallHost(Protocol):
    """What a call mode may use of the calls plugin."""

    #: the calls plugin's settings (``plugins.settings.calls``)
    settings: Mapping[str, Any]

    def conference(self, room_id: str) -> Conference:
        """The audio mixer of ``room_id``'s conference (made when first asked for)."""

    def hang_up_soon(self, live: ModeCall, reason: str) -> None:
        """End the call (from a callback that cannot wait), ``reason`` as in Matrix
        (``user_hangup``)."""

    async def announce(self, live: ModeCall, text: str) -> None:
        """A notice in the room the call belongs to (a conference's own room)."""

    def announce_soon(self, live: ModeCall, text: str) -> None:
        """:meth:`announce` from a callback that cannot wait."""

    def intent(self, user_id: str) -> IntentAPI:
        """The Matrix API as one of the calls plugin's users (``live.call.our_user``),
        e.g. to upload a recording."""

    async def upload(
        self, room_id: str, data: bytes, user_id: str, *, mime_type: str, filename: str
    ) -> dict[str, Any]:
        """Upload a recording to post into ``room_id`` as ``user_id``: the content fields
        pointing at it, ``{"url": ...}`` or, in an encrypted room, ``{"file": ...}``
        (``bridge.media.upload``)."""
