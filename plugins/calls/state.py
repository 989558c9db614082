"""The signalling state machine: which calls exist and what each event means for them.

Pure and synchronous (no I/O, the clock is injected), so every rule of the spec is unit
tested on its own: the manager feeds it parsed events and carries out the actions it
returns.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .signalling import CallEvent, Candidate


@dataclass(frozen=True)
class Route:
    """Who of ours takes an incoming call and in which mode (``echo``, ``conference``...).
    ``key`` says which conference (or other shared thing) the call belongs to."""

    callee: str
    mode: str
    key: str = ""


@dataclass(frozen=True)
class Refusal:
    """An invite for one of ours that is not to be answered: ``callee`` refuses it
    (``m.call.reject``, a hangup for version 0) and tells the caller ``reason``."""

    callee: str
    reason: str


@dataclass
class Call:
    room_id: str
    call_id: str
    our_user: str
    their_user: str
    mode: str
    key: str
    version: str
    outgoing: bool
    our_party: str
    their_party: str | None = None
    state: str = "ringing"  # ringing, inviting, answering, connected, ended
    offer_sdp: str | None = None
    invite_event_id: str = ""
    pending_candidates: list[Candidate] = field(default_factory=list)
    remote_end_of_candidates: bool = False
    remote_metadata: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)  # the mode's (memo length...)

    @property
    def id(self) -> tuple[str, str]:
        return (self.room_id, self.call_id)


# ----- actions the manager carries out -----
@dataclass(frozen=True)
class Answer:
    call: Call


@dataclass(frozen=True)
class Busy:
    """Refuse an invite because the process, or the caller, has its limit of calls."""

    event: CallEvent
    callee: str


@dataclass(frozen=True)
class Refuse:
    """Refuse an invite for one of ours (not a member, no permission...), saying why."""

    event: CallEvent
    callee: str
    reason: str


@dataclass(frozen=True)
class AddCandidates:
    call: Call
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Accepted:
    """The callee of our outgoing call answered: set its SDP, send select_answer."""

    call: Call
    sdp: str


@dataclass(frozen=True)
class Renegotiate:
    call: Call
    sdp: str


@dataclass(frozen=True)
class MetadataChanged:
    call: Call
    metadata: dict[str, Any]


@dataclass(frozen=True)
class End:
    """Stop a call. ``notify``: send a hangup (we end it); otherwise end silently."""

    call: Call
    reason: str
    notify: bool


@dataclass(frozen=True)
class Ignore:
    why: str


Action = (
    Answer | Busy | Refuse | AddCandidates | Accepted | Renegotiate | MetadataChanged | End | Ignore
)


class CallBook:
    """Every call the process knows, keyed by (room, call_id).

    ``is_ours(user_id)`` tells our own users (their events are echoes of what we sent).
    The manager works out beforehand who of ours would answer an invite (the ``route``
    given to :meth:`handle`; None when the invite is not for us, a :class:`Refusal`
    when one of ours refuses it), as that may need I/O. ``max_calls`` bounds the calls
    of the process, ``max_per_person`` those of one caller, so nobody takes every line.
    """

    def __init__(
        self,
        *,
        is_ours: Callable[[str], bool],
        max_calls: int,
        max_per_person: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        buffer_ttl: float = 120.0,
        buffer_calls: int = 256,
        buffer_per_call: int = 200,
    ) -> None:
        self.is_ours = is_ours
        self.max_calls = max_calls
        self.max_per_person = max_per_person or max_calls
        self.clock = clock
        self.calls: dict[tuple[str, str], Call] = {}
        self._early: OrderedDict[tuple[str, str], tuple[float, str, list[Candidate]]] = (
            OrderedDict()
        )
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.buffer_ttl = buffer_ttl
        self.buffer_calls = buffer_calls
        self.buffer_per_call = buffer_per_call

    # ----- queries -----
    @property
    def active(self) -> list[Call]:
        return [c for c in self.calls.values() if c.state != "ended"]

    def find(self, room_id: str, call_id: str) -> Call | None:
        return self.calls.get((room_id, call_id))

    # ----- incoming events -----
    def calls_of(self, user_id: str) -> int:
        """How many calls ``user_id`` is in (ringing or connected)."""
        return sum(1 for c in self.active if c.their_user == user_id)

    def handle(self, event: CallEvent, route: Route | Refusal | None = None) -> list[Action]:
        if self.is_ours(event.sender):
            return [Ignore("our own echo")]
        key = (event.room_id, event.call_id)
        if event.kind == "invite":
            return self._invite(event, route)
        call = self.calls.get(key)
        if call is None:
            if key in self._ended:
                return [Ignore("the call has ended")]
            if event.kind == "candidates":
                self._buffer(event)
                return [Ignore("candidates before the invite: buffered")]
            return [Ignore(f"{event.kind} for an unknown call")]
        if call.state == "ended":
            return [Ignore("the call has ended")]
        if call.their_user != event.sender:
            return [Ignore(f"{event.kind} from {event.sender}, who is not in the call")]
        handler = getattr(self, f"_on_{event.kind}")
        return handler(call, event)

    def would_answer(self, event: CallEvent, route: Route | Refusal | None) -> bool:
        """Whether :meth:`handle` would answer this invite now; nothing changes. The
        manager asks the policy only then, and before :meth:`handle` commits to the
        call: a refusal is an invite refused (a :class:`Refusal` route), never a call
        taken and then undone."""
        if event.kind != "invite" or self.is_ours(event.sender):
            return False
        return self._invite_verdict(event, route)[0] is None

    def _invite_verdict(
        self, event: CallEvent, route: Route | Refusal | None
    ) -> tuple[str | None, Call | None]:
        """Why an invite is not answered (None: it is), and our own invite to the caller
        it meets (glare); changes nothing."""
        key = (event.room_id, event.call_id)
        if key in self.calls or key in self._ended:
            return "seen", None
        age = event.age_ms or 0
        if event.lifetime_ms is not None and age >= event.lifetime_ms:
            return "expired", None
        if route is None:
            return "not_for_us", None
        if isinstance(route, Refusal):
            return "refused", None
        glare = self._outgoing_to(event.room_id, event.sender)
        if glare is not None and event.call_id >= glare.call_id:
            return "ours_wins", glare
        freed = 1 if glare is not None else 0  # theirs wins: ours ends first
        if (
            len(self.active) - freed >= self.max_calls
            or self.calls_of(event.sender) - freed >= self.max_per_person
        ):
            return "busy", glare
        return None, glare

    def _invite(self, event: CallEvent, route: Route | Refusal | None) -> list[Action]:
        key = (event.room_id, event.call_id)
        why, glare = self._invite_verdict(event, route)
        if why == "seen":
            return [Ignore("invite seen before")]
        if why == "expired":
            self._early.pop(key, None)
            age = event.age_ms or 0
            return [Ignore(f"expired invite: {age} ms old, lifetime {event.lifetime_ms} ms")]
        if why == "not_for_us":
            return [Ignore(f"invite for {event.invitee or 'someone else'}, not for us")]
        if isinstance(route, Refusal):
            self._remember_ended(key)  # a repeat of the invite is not refused twice
            return [Refuse(event, route.callee, route.reason)]
        if why == "ours_wins":
            return [Ignore("glare: our own invite has the lower call_id and wins")]
        actions: list[Action] = []
        mode, mode_key, options = route.mode, route.key, {}
        if glare is not None:
            # Theirs wins: drop ours silently (they do the same) and take theirs instead.
            mode, mode_key, options = glare.mode, glare.key, glare.options
            actions.append(End(glare, "replaced", notify=False))
            self._finish(glare)
        if why == "busy":
            return [*actions, Busy(event, route.callee)]
        call = Call(
            room_id=event.room_id,
            call_id=event.call_id,
            our_user=route.callee,
            their_user=event.sender,
            mode=mode,
            key=mode_key,
            version=event.version,
            outgoing=False,
            our_party=new_party_id(),
            their_party=event.party_id,
            offer_sdp=event.sdp,
            invite_event_id=event.event_id,
            started=self.clock(),
            remote_metadata=dict(event.stream_metadata),
            options=dict(options),
        )
        early = self._early.pop(key, None)
        if early is not None and early[1] == event.sender:
            call.pending_candidates = [c for c in early[2] if not c.is_end]
            call.remote_end_of_candidates = any(c.is_end for c in early[2])
        self.calls[key] = call
        return [*actions, Answer(call)]

    def _on_candidates(self, call: Call, event: CallEvent) -> list[Action]:
        if call.their_party and event.party_id and event.party_id != call.their_party:
            return [Ignore("candidates from another of their devices")]
        if call.state in ("ringing", "inviting"):
            call.pending_candidates += [c for c in event.candidates if not c.is_end]
            call.remote_end_of_candidates |= event.end_of_candidates
            return [Ignore("candidates kept until the call is set up")]
        return [AddCandidates(call, event.candidates)]

    def _on_answer(self, call: Call, event: CallEvent) -> list[Action]:
        if not call.outgoing or call.state != "inviting":
            return [Ignore("answer for a call we did not place or already set up")]
        call.their_party = event.party_id
        call.state = "answering"
        return [Accepted(call, event.sdp or "")]

    def _on_select_answer(self, call: Call, event: CallEvent) -> list[Action]:
        if call.outgoing:
            return [Ignore("select_answer is for callees")]
        if event.selected_party_id != call.our_party:
            self._finish(call)
            return [End(call, "answered_elsewhere", notify=False)]
        return [Ignore("our answer was selected")]

    def _on_negotiate(self, call: Call, event: CallEvent) -> list[Action]:
        if event.sdp_type != "offer":
            return [Ignore("negotiate answer: we do not send offers mid-call")]
        if event.stream_metadata:
            call.remote_metadata = dict(event.stream_metadata)
        return [Renegotiate(call, event.sdp or "")]

    def _on_hangup(self, call: Call, event: CallEvent) -> list[Action]:
        if call.their_party and event.party_id and event.party_id != call.their_party:
            return [Ignore("hangup from another of their devices")]
        self._finish(call)
        return [End(call, event.reason or "user_hangup", notify=False)]

    def _on_reject(self, call: Call, event: CallEvent) -> list[Action]:
        if not call.outgoing:
            return [Ignore("reject is for invites we sent")]
        self._finish(call)
        return [End(call, "rejected", notify=False)]

    def _on_sdp_stream_metadata_changed(self, call: Call, event: CallEvent) -> list[Action]:
        call.remote_metadata = dict(event.stream_metadata)
        return [MetadataChanged(call, call.remote_metadata)]

    # ----- things the manager tells us -----
    def place(
        self,
        room_id: str,
        our_user: str,
        their_user: str,
        route: Route,
        options: dict[str, Any] | None = None,
    ) -> Call:
        """Register an outgoing call (we send the invite)."""
        call = Call(
            room_id=room_id,
            call_id=new_call_id(),
            our_user=our_user,
            their_user=their_user,
            mode=route.mode,
            key=route.key,
            version="1",
            outgoing=True,
            our_party=new_party_id(),
            state="inviting",
            started=self.clock(),
            options=dict(options or {}),
        )
        self.calls[call.id] = call
        return call

    def connected(self, call: Call) -> None:
        if call.state != "ended":
            call.state = "connected"

    def end(self, call: Call, reason: str, *, notify: bool = True) -> list[Action]:
        """We end a call (hang-up, ICE failure, policy...). Returns the End to carry out
        once, or nothing when it had already ended."""
        if call.state == "ended":
            return []
        self._finish(call)
        return [End(call, reason, notify)]

    def member_left(self, room_id: str, user_id: str) -> list[Action]:
        """The other side left ``room_id``: end every call with them there, and every
        call of theirs that belongs to that room (its conference, called from a direct
        chat), as only the room's members may be in it."""
        actions: list[Action] = []
        for call in self.active:
            if call.their_user == user_id and room_id in (call.room_id, call.key):
                actions += self.end(call, "user_hangup")
        return actions

    def expire(self) -> list[Action]:
        """Invites we placed that nobody answered within their lifetime."""
        actions: list[Action] = []
        for call in self.active:
            expired = self.clock() - call.started > INVITE_LIFETIME_MS / 1000
            if call.outgoing and call.state == "inviting" and expired:
                actions += self.end(call, "invite_timeout")
        return actions

    # ----- internals -----
    def refused(self, room_id: str, call_id: str) -> bool:
        """An invite that could not be read is refused: True the first time, so that a
        repeat of it is not refused again."""
        key = (room_id, call_id)
        if key in self._ended or key in self.calls:
            return False
        self._remember_ended(key)
        return True

    def _finish(self, call: Call) -> None:
        call.state = "ended"
        self.calls.pop(call.id, None)
        self._remember_ended(call.id)

    def _remember_ended(self, key: tuple[str, str]) -> None:
        self._ended[key] = None
        while len(self._ended) > 4096:
            self._ended.popitem(last=False)

    def _outgoing_to(self, room_id: str, user_id: str) -> Call | None:
        for call in self.active:
            if (
                call.outgoing
                and call.state == "inviting"
                and call.room_id == room_id
                and call.their_user == user_id
            ):
                return call
        return None

    def _buffer(self, event: CallEvent) -> None:
        """Keep candidates that outran their invite (bounded in count, size and age)."""
        now = self.clock()
        for key in [k for k, v in self._early.items() if now - v[0] > self.buffer_ttl]:
            del self._early[key]
        key = (event.room_id, event.call_id)
        first, sender, items = self._early.get(key, (now, event.sender, []))
        if sender != event.sender:
            return
        items = (items + list(event.candidates))[: self.buffer_per_call]
        self._early[key] = (first, sender, items)
        self._early.move_to_end(key)
        while len(self._early) > self.buffer_calls:
            self._early.popitem(last=False)


INVITE_LIFETIME_MS = 60_000


def new_call_id() -> str:
    return f"anywhere{int(time.time() * 1000)}{secrets.token_hex(6)}"


def new_party_id() -> str:
    return "anywhere" + secrets.token_hex(8)
