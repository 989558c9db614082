"""The calls the bridge is in: signalling decisions carried out with aiortc and Matrix.

The :class:`~anywhere.plugins.calls.state.CallBook` decides what an event means; this module does
it — asks the policy engine, answers, sends, hangs up — through the event context of the
event that started the call, so every send carries a transaction id derived from that
event and a repeat after a crash is dropped by the homeserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError

from anywhere.bridge import EventContext, MatrixEvent

from .ice import IceServers, limit_gathering
from .mixer import Conference
from .modes import MODES, CallMode
from .routing import BotModes, CallRouter
from .sdp import candidates_in_sdp, mids_by_mline, offer_problem, usermedia_metadata
from .session import MediaSession
from .settings import check_bot_modes
from .signalling import CallEvent, Candidate, SignallingError, call_content, parse_call_event
from .state import (
    Accepted,
    Action,
    AddCandidates,
    Answer,
    Busy,
    Call,
    CallBook,
    End,
    Ignore,
    MetadataChanged,
    Refusal,
    Refuse,
    Renegotiate,
    Route,
    new_party_id,
)
from .tracks import listen

if TYPE_CHECKING:
    from mautrix.appservice import IntentAPI

    from anywhere.bridge.api import Host

INVITE_LIFETIME_MS = 60_000
#: The state events of a MatrixRTC call (Element Call, Element X): the stable name and
#: the MSC3401 one clients send today.
RTC_MEMBER_TYPES = ("m.call.member", "org.matrix.msc3401.call.member")
RTC_NOTICE = (
    "Someone started a MatrixRTC call (Element Call, as Element X places calls) here. "
    "Anywhere does not take part in those yet: the echo test, voice memos and room "
    "conferences answer 1:1 voice calls, which Element Web, Element Desktop, classic "
    "Element on Android and iOS, SchildiChat, Nheko and FluffyChat place. Use one of "
    "those to call."
)
_END = Candidate("", None, None)


@dataclass
class LiveCall:
    """A call with media: its signalling state, its peer connection and its mode."""

    call: Call
    ctx: EventContext
    bridge: Host
    session: MediaSession | None = None
    mode: CallMode | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.call.room_id}|{self.call.call_id}"

    @property
    def duration(self) -> float:
        if self.connected_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.connected_at

    @property
    def as_user(self) -> str | None:
        return None if self.call.our_user == self.bridge.info.bot_user_id else self.call.our_user

    async def send(self, event_type: str, content: dict[str, Any], room_id: str = "") -> str:
        return await self.ctx.send(
            room_id or self.call.room_id, content, event_type, as_user=self.as_user
        )

    async def send_call(self, kind: str, **fields: Any) -> str:
        call = self.call
        content = call_content(call.call_id, call.our_party, call.version, **fields)
        return await self.send(f"m.call.{kind}", content)

    async def notice(self, text: str, room_id: str = "") -> str:
        return await self.send("m.room.message", {"msgtype": "m.notice", "body": text}, room_id)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class CallManager:
    """The calls of the bridge: routes invites, keeps the pure state machine
    (:class:`CallBook`) and the media of each call, and is the
    :class:`~anywhere.plugins.calls.host.CallHost` its call modes get."""

    def __init__(
        self,
        bridge: Host,
        settings: dict[str, Any],
        modes: dict[str, type[CallMode]] | None = None,
    ) -> None:
        self.bridge = bridge
        self.modes = modes or dict(MODES)
        self.settings = settings
        self.log = bridge.log.bind(plugin="calls")
        self.book = CallBook(
            is_ours=bridge.is_ours,
            max_calls=int(settings["max_calls"]),
            max_per_person=int(settings["max_calls_per_person"]),
        )
        self.live: dict[tuple[str, str], LiveCall] = {}
        self.conferences: dict[str, Conference] = {}
        rules = settings["bot_modes"]
        check_bot_modes(rules, self.modes, "plugins.settings.calls.bot_modes")
        self.router = CallRouter(bridge, BotModes(rules))
        turn = self._fetch_turn if settings["homeserver_turn"] else None
        self.ice = IceServers(settings["ice_servers"], turn)
        self._timer: asyncio.Task | None = None
        self._learning: asyncio.Task | None = None
        self._hang_ups: set[asyncio.Task] = set()
        limit_gathering(settings["ice_addresses"])

    # ----- life cycle -----
    async def start(self) -> None:
        self._timer = asyncio.create_task(self._expire_invites())
        self._learning = asyncio.create_task(self.router.learn_rooms())

    async def stop(self) -> None:
        for task in (self._timer, self._learning):
            if task:
                task.cancel()
        for live in list(self.live.values()):
            with contextlib.suppress(Exception):
                await self.hang_up(live, "user_hangup")

    async def _expire_invites(self) -> None:
        while True:
            await asyncio.sleep(1)
            for action in self.book.expire():
                await self._perform(action, None)

    async def _fetch_turn(self) -> dict[str, Any]:
        """The homeserver's TURN server for the bot ({} when it has none)."""
        try:
            answer = await self.bridge.bot.api.request(Method.GET, Path.v3.voip.turnServer)
        except MatrixRequestError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def intent(self, user_id: str) -> IntentAPI:
        """The Matrix API as one of our users (for call modes: :class:`CallHost`)."""
        return self.bridge.intent(user_id)

    async def upload(
        self, room_id: str, data: bytes, user_id: str, *, mime_type: str, filename: str
    ) -> dict[str, Any]:
        """:meth:`CallHost.upload`: encrypted in encrypted rooms."""
        return await self.bridge.media.upload(
            room_id, data, intent=self.intent(user_id), mime_type=mime_type, filename=filename
        )

    # ----- routing -----
    def conference(self, room_id: str) -> Conference:
        if room_id not in self.conferences:
            self.conferences[room_id] = Conference(room_id)
        return self.conferences[room_id]

    # ----- events -----
    async def on_call_event(self, event: MatrixEvent, ctx: EventContext) -> None:
        if self.bridge.is_ours(event.sender):
            return  # the echo of what we sent
        try:
            parsed = parse_call_event(event.raw)
        except SignallingError as exc:
            ctx.log.warning("malformed call event", type=event.type, problem=str(exc))
            await self._unusable(event, ctx, str(exc))
            return
        if parsed.skipped_candidates:
            ctx.log.warning("unreadable ICE candidates skipped", count=parsed.skipped_candidates)
        route, began = None, time.perf_counter()
        timing = (began, began, began)
        if parsed.kind == "invite":
            route = await self.router.route(parsed.room_id, parsed.invitee, parsed.sender)
            routed = time.perf_counter()
            if isinstance(route, Route) and self.book.would_answer(parsed, route):
                route = await self._ask_policy(parsed, route)
            timing = (began, routed, time.perf_counter())
        for action in self.book.handle(parsed, route):
            if isinstance(action, Answer):
                await self._answer(action.call, ctx, timing)
            else:
                await self._perform(action, ctx)

    async def _ask_policy(self, invite: CallEvent, route: Route) -> Route | Refusal:
        """May the caller make this call? Asked before the book takes the call, so that a
        refusal is an invite refused (``m.call.reject`` and a notice with the rule's
        reason), never a call the state machine took and is told to undo."""
        decision = await self.bridge.authorize(
            invite.sender,
            "call.answer",
            route.callee,
            {"room_id": invite.room_id, "call_id": invite.call_id, "mode": route.mode},
        )
        return route if decision.allowed else Refusal(route.callee, decision.reason)

    async def _unusable(self, event: MatrixEvent, ctx: EventContext, problem: str) -> None:
        """A call event that cannot be read. An invite for one of ours with a call_id is
        refused with the reason, so the caller does not ring until their own timeout; a
        renegotiation of a call in progress ends it. Events without a call_id, and those
        for others, are only logged."""
        call_id = event.content.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            return
        if event.type == "m.call.negotiate":
            call = self.book.find(event.room_id, call_id)
            live = self.live.get(call.id) if call else None
            if live is not None and call.their_user == event.sender:
                await self._hang_up_unusable(live, f"the new offer cannot be used: {problem}")
            return
        if event.type != "m.call.invite":
            return
        invitee = event.content.get("invitee")
        route = await self.router.route(
            event.room_id, invitee if isinstance(invitee, str) else None, event.sender
        )
        if route is None or not self.book.refused(event.room_id, call_id):
            return
        version = "0" if event.content.get("version") in (0, "0") else "1"
        reason = f"the invite cannot be used: {problem}"
        await self._refuse(ctx, event.room_id, call_id, version, route.callee, reason)

    async def _refuse(
        self,
        ctx: EventContext,
        room_id: str,
        call_id: str,
        version: str,
        callee: str,
        reason: str,
    ) -> None:
        """Refuse an invite as ``callee``: ``m.call.reject`` (a hangup for version 0,
        which has no reject), then a notice saying why."""
        as_user = None if callee == self.bridge.info.bot_user_id else callee
        content = call_content(call_id, new_party_id(), version)
        kind = "m.call.hangup" if version == "0" else "m.call.reject"
        content["reason"] = "user_hangup" if version == "0" else "unknown_error"
        await ctx.send(room_id, content, kind, as_user=as_user)
        notice = {"msgtype": "m.notice", "body": f"Your call was not answered: {reason}."}
        await ctx.send(room_id, notice, as_user=as_user)
        ctx.log.info("call refused", call_id=call_id, reason=reason)

    async def on_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        membership = event.content.get("membership")
        user = event.state_key or ""
        if self.bridge.is_ours(user):
            await self.router.track(event.room_id, user, membership)
            return
        if membership not in ("leave", "ban"):
            return
        for action in self.book.member_left(event.room_id, user):
            await self._perform(action, ctx)

    async def on_rtc_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        """A MatrixRTC call (Element Call, Element X) started in a room with one of ours:
        say once in that room what is not supported and which clients reach the calls."""
        content = event.content
        if self.bridge.is_ours(event.sender) or not content or content.get("memberships") == []:
            return  # someone leaving the call (empty content), or our own
        told = await self.bridge.db.fetchval(
            "SELECT room_id FROM calls_rtc_notice WHERE room_id = $1", event.room_id
        )
        seen = None if told else await self.router.members(event.room_id, prefer=self.router.bot)
        if seen is None:
            return
        speaker = seen[0]
        as_user = None if speaker == self.bridge.info.bot_user_id else speaker
        # sent, then remembered: after a crash in between, the replayed event sends with
        # the same transaction id, which the homeserver does not post twice
        await ctx.send(event.room_id, {"msgtype": "m.notice", "body": RTC_NOTICE}, as_user=as_user)
        await self.bridge.db.execute(
            "INSERT INTO calls_rtc_notice (room_id) VALUES ($1) ON CONFLICT (room_id) DO NOTHING",
            event.room_id,
        )

    async def _perform(self, action: Action, ctx: EventContext | None) -> None:
        live = self.live.get(action.call.id) if hasattr(action, "call") else None
        if isinstance(action, Ignore):
            if ctx is not None:
                ctx.log.debug("call event ignored", why=action.why)
        elif isinstance(action, Answer):
            await self._answer(action.call, ctx)
        elif isinstance(action, Busy):
            await self._busy(action, ctx)
        elif isinstance(action, Refuse):
            event = action.event
            await self._refuse(
                ctx, event.room_id, event.call_id, event.version, action.callee, action.reason
            )
        elif isinstance(action, AddCandidates) and live and live.session:
            await self._add_candidates(live, action.candidates)
        elif isinstance(action, Accepted) and live and live.session:
            try:
                await self._accepted(live, action.sdp)
            except Exception as exc:
                live.ctx.log.warning("could not use the answer; hanging up", problem=str(exc))
                await self.hang_up(live, "unknown_error")
        elif isinstance(action, Renegotiate) and live and live.session:
            await self._renegotiate(live, action.sdp)
        elif isinstance(action, MetadataChanged) and live:
            live.ctx.log.info("remote stream metadata changed", metadata=action.metadata)
        elif isinstance(action, End):
            await self._end(action, live, ctx)

    # ----- answering and placing -----
    async def _answer(
        self, call: Call, ctx: EventContext, timing: tuple[float, float, float] | None = None
    ) -> None:
        """Answer an invite the policy allowed; ``timing``: when its handling began, when
        it was routed and when the policy had decided."""
        began, routed, decided = timing or (time.perf_counter(),) * 3
        live = LiveCall(call, ctx, self.bridge)
        self.live[call.id] = live
        try:
            await self._start_media(live)
            sdp = await live.session.answer(call.offer_sdp or "")
        except Exception as exc:  # an offer aiortc cannot use (codecs, malformed SDP)
            ctx.log.warning(
                "could not answer the call's offer; hanging up",
                call_id=call.call_id,
                problem=f"{type(exc).__name__}: {exc}",
            )
            await self.hang_up(live, "unknown_error")
            return
        if call.state == "ended":  # hung up while we were setting up
            await self._close(live, "user_hangup")
            return
        call.state = "answering"
        await self._add_pending(live)
        ready = time.perf_counter()
        await live.send_call(
            "answer",
            answer={"type": "answer", "sdp": sdp},
            sdp_stream_metadata=usermedia_metadata(sdp),
            capabilities={"m.call.transferee": False, "m.call.dtmf": False},
        )
        ctx.log.info(
            "call answered",
            call_id=call.call_id,
            mode=call.mode,
            setup_ms=round((time.perf_counter() - began) * 1000, 1),
            route_ms=round((routed - began) * 1000, 1),
            policy_ms=round((decided - routed) * 1000, 1),
            media_ms=round((ready - decided) * 1000, 1),
        )
        await self._send_our_candidates(live, sdp)

    async def place(
        self,
        ctx: EventContext,
        room_id: str,
        person: str,
        mode: str,
        options: dict[str, Any] | None = None,
    ) -> Call:
        """Call ``person`` in ``room_id`` from the bot (the policy was asked already)."""
        bot = self.bridge.info.bot_user_id
        call = self.book.place(room_id, bot, person, Route(bot, mode), options)
        live = LiveCall(call, ctx, self.bridge)
        self.live[call.id] = live
        await self._start_media(live)
        sdp = await live.session.offer()
        await live.send_call(
            "invite",
            offer={"type": "offer", "sdp": sdp},
            lifetime=INVITE_LIFETIME_MS,
            invitee=person,
            sdp_stream_metadata=usermedia_metadata(sdp),
        )
        await self._send_our_candidates(live, sdp)
        return call

    async def _renegotiate(self, live: LiveCall, offer_sdp: str) -> None:
        """Hold, resume or a media change: answer the new offer. An offer that cannot be
        used (no audio line, media lines changed or missing, garbage) ends the call with
        the reason: answering it would leave both sides without media."""
        problem = offer_problem(offer_sdp, live.session.pc.remoteDescription)
        if problem is None:
            try:
                sdp = await live.session.answer(offer_sdp)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            await self._hang_up_unusable(live, f"the new offer cannot be used: {problem}")
            return
        await live.send_call(
            "negotiate",
            description={"type": "answer", "sdp": sdp},
            sdp_stream_metadata=usermedia_metadata(sdp),
            lifetime=INVITE_LIFETIME_MS,
        )

    async def _hang_up_unusable(self, live: LiveCall, problem: str) -> None:
        live.ctx.log.warning("hanging up a call", call_id=live.call.call_id, problem=problem)
        with contextlib.suppress(Exception):
            await live.notice(f"Call ended: {problem}.")
        await self.hang_up(live, "unknown_error")

    async def _accepted(self, live: LiveCall, sdp: str) -> None:
        await live.session.accept(sdp)
        await live.send_call("select_answer", selected_party_id=live.call.their_party or "")
        await self._add_pending(live)

    async def _busy(self, action: Busy, ctx: EventContext) -> None:
        event = action.event
        content = call_content(event.call_id, "anywhere-busy", event.version, reason="user_busy")
        as_user = None if action.callee == self.bridge.info.bot_user_id else action.callee
        await ctx.send(event.room_id, content, "m.call.hangup", as_user=as_user)
        ctx.log.info("call refused: busy", active=len(self.book.active))

    async def _start_media(self, live: LiveCall) -> None:
        mode = self.modes[live.call.mode](self, live)
        live.mode = mode

        def on_track(track: Any) -> None:
            if track.kind == "audio":
                live.spawn(listen(track, mode.on_audio))

        def on_state(state: str) -> None:
            if state == "connected" and live.connected_at is None:
                live.connected_at = time.monotonic()
                self.book.connected(live.call)
                mode.on_connected()
            elif state == "failed":
                self.hang_up_soon(live, "ice_failed")
            elif state == "closed" and live.ended_at is None:
                self.hang_up_soon(live, "user_hangup")  # the other side closed its media

        live.session = MediaSession(await self.ice.configuration(), mode.track, on_track, on_state)
        live.spawn(self._watch(live))

    async def _watch(self, live: LiveCall) -> None:
        """Hang up when media never connects, or when the call reaches its mode's
        longest length; keep statistics fresh."""
        deadline = time.monotonic() + float(self.settings["connect_timeout"])
        longest = live.mode.max_seconds() if live.mode else float(self.settings["max_call_seconds"])
        while live.ended_at is None:
            await asyncio.sleep(1)
            if live.connected_at is None and time.monotonic() > deadline:
                await self.hang_up(live, "ice_failed")
                return
            if live.connected_at is not None and live.duration >= longest:
                with contextlib.suppress(Exception):
                    await live.notice(
                        f"Call ended: {longest:g} s is the longest a call may last here "
                        f"(mode: {live.call.mode}). Call again to go on."
                    )
                await self.hang_up(live, "user_hangup")
                return
            if live.connected_at is not None and live.session:
                await live.session.measure()

    async def _add_pending(self, live: LiveCall) -> None:
        call = live.call
        pending, call.pending_candidates = call.pending_candidates, []
        if pending:
            await self._add_candidates(live, pending)
        if call.remote_end_of_candidates:
            await live.session.add_candidates([_END])

    async def _add_candidates(self, live: LiveCall, candidates: Any) -> None:
        bad = await live.session.add_candidates(candidates)
        if bad:
            live.ctx.log.warning("unusable ICE candidates skipped", count=bad)

    async def _send_our_candidates(self, live: LiveCall, sdp: str) -> None:
        found = [c.to_content() for c in candidates_in_sdp(sdp)]
        # end-of-candidates as browsers give it (some clients require mid and index)
        end = {"candidate": "", "sdpMid": mids_by_mline(sdp).get(0, "0"), "sdpMLineIndex": 0}
        await live.send_call("candidates", candidates=[*found, end])

    # ----- ending -----
    def hang_up_soon(self, live: LiveCall, reason: str) -> None:
        """Hang up from a callback that cannot await (media callbacks, timers)."""
        task = asyncio.get_running_loop().create_task(self.hang_up(live, reason))
        self._hang_ups.add(task)
        task.add_done_callback(self._hang_ups.discard)

    async def hang_up(self, live: LiveCall, reason: str) -> None:
        for action in self.book.end(live.call, reason, notify=True):
            await self._perform(action, live.ctx)

    async def _end(self, action: End, live: LiveCall | None, ctx: EventContext | None) -> None:
        if live is None:
            return
        if action.notify:
            with contextlib.suppress(Exception):
                await live.send_call("hangup", reason=action.reason)
        await self._close(live, action.reason)

    async def _close(self, live: LiveCall, reason: str) -> None:
        if live.ended_at is not None:
            return
        live.ended_at = time.monotonic()
        self.live.pop(live.call.id, None)
        if live.session:
            quality = await live.session.measure()
            await live.session.close()
            await self._record_usage(live, quality.bytes_sent + quality.bytes_received)
        current = asyncio.current_task()
        for task in list(live.tasks):
            if task is not current:
                task.cancel()
        live.ctx.log.info(
            "call ended", call_id=live.call.call_id, reason=reason, seconds=round(live.duration, 1)
        )
        if live.mode:
            try:
                await live.mode.on_end(reason)
            except Exception:
                live.ctx.log.exception("call mode failed at the end of the call")

    async def _record_usage(self, live: LiveCall, wire_bytes: int) -> None:
        """The call's data volume counts towards the person's mobile-VoIP usage this month
        (the policy plugin's ``mvoip_mb_used_this_month`` fact, which carrier quota rules
        read): what their phone sent and received, as their carrier would count it."""
        person = live.call.their_user
        if wire_bytes <= 0 or self.bridge.is_ours(person):
            return
        try:
            await self.bridge.record_usage(person, "mvoip_mb", wire_bytes / 1_000_000)
        except Exception:
            live.ctx.log.exception("could not record the call's data use")

    # ----- conference announcements -----
    async def announce(self, live: LiveCall, text: str) -> None:
        await live.notice(text, room_id=live.call.key or live.call.room_id)

    def announce_soon(self, live: LiveCall, text: str) -> None:
        live.spawn(self.announce(live, text))
