"""What the bridge does with the audio of a call: echo test, voice memo, conference.

A mode is made per call (``mode_class(host, live)``, with the
:class:`~anywhere.plugins.calls.host.CallHost` and the
:class:`~anywhere.plugins.calls.host.ModeCall`) and
offers ``track`` (what we send), ``on_audio(samples)`` (what we hear, mono 48 kHz),
``on_connected()`` and ``on_end(reason)``, and may shorten ``max_seconds()``. The
built-in modes are in :data:`MODES`; other plugins give theirs through
``anywhere_calls_modes`` (plugins/calls/hookspecs.py).
"""

from __future__ import annotations

import warnings
from array import array
from typing import TYPE_CHECKING, Any

from .audio import SAMPLE_RATE, encode_ogg_opus, silence, waveform
from .tracks import Greeting, PacedTrack, SampleFifo

if TYPE_CHECKING:
    from .host import CallHost, ModeCall


class CallMode:
    name = ""

    def __init__(self, host: CallHost, live: ModeCall) -> None:
        self.host = host
        self.live = live
        self.track: Any = None

    @property
    def manager(self) -> CallHost:
        """The name of :attr:`host` before contract 1.1 (modes were given the whole
        CallManager then): use ``self.host``. Goes in the next release."""
        warnings.warn(
            f"{type(self).__name__}.manager is deprecated and goes in the next release: use "
            "self.host (a anywhere.plugins.calls.host.CallHost)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.host

    def max_seconds(self) -> float:
        """The longest a call in this mode may last once connected (then the bridge
        hangs up): ``max_call_seconds``, unless the mode has a limit of its own."""
        return float(self.host.settings["max_call_seconds"])

    def on_audio(self, samples: array) -> None:
        """Audio from the other side (called for every decoded frame)."""

    def on_connected(self) -> None:
        """Media flows."""

    async def on_end(self, reason: str) -> None:
        """The call is over; the peer connection is closed, its statistics kept."""


class EchoTest(CallMode):
    """A tone, then everything the caller says comes back; a quality report at the end."""

    name = "echo"

    def __init__(self, host: CallHost, live: ModeCall) -> None:
        super().__init__(host, live)
        self.fifo = SampleFifo()
        settings = host.settings
        self.greeting = Greeting(settings["greeting_hz"], settings["greeting_ms"], self.fifo.take)
        self.track = PacedTrack(self.greeting)

    def max_seconds(self) -> float:
        settings = self.host.settings
        return float(min(settings["echo_max_seconds"], settings["max_call_seconds"]))

    def on_audio(self, samples: array) -> None:
        if self.greeting.done:
            self.fifo.feed(samples)

    async def on_end(self, reason: str) -> None:
        if self.live.connected_at is None or reason == "answered_elsewhere":
            return
        q = self.live.session.quality
        rtt = f"{q.rtt_ms:.0f} ms" if q.rtt_ms is not None else "not measured"
        jitter = f"{q.jitter_ms:.1f} ms" if q.jitter_ms is not None else "not measured"
        await self.live.notice(
            f"Call quality test: {self.live.duration:.1f} s, round-trip time {rtt}, "
            f"jitter {jitter}, packet loss {q.loss_percent:.1f}% "
            f"({q.packets_received} packets received, {q.packets_sent} sent)."
        )


class VoiceMemo(CallMode):
    """A tone, then up to ``memo_max_seconds`` of recording, posted as a voice message."""

    name = "memo"

    def __init__(self, host: CallHost, live: ModeCall) -> None:
        super().__init__(host, live)
        settings = host.settings
        seconds = live.call.options.get("seconds") or settings["memo_max_seconds"]
        self.limit = int(seconds * SAMPLE_RATE)
        self.recording = array("h")
        self.greeting = Greeting(settings["greeting_hz"], settings["greeting_ms"], silence)
        self.track = PacedTrack(self.greeting)
        self._full = False

    def on_audio(self, samples: array) -> None:
        if not self.greeting.done or self._full:
            return
        self.recording.extend(samples[: self.limit - len(self.recording)])
        if len(self.recording) >= self.limit:
            self._full = True
            self.host.hang_up_soon(self.live, "user_hangup")

    async def on_end(self, reason: str) -> None:
        seconds = len(self.recording) / SAMPLE_RATE
        if seconds < 0.5:
            if self.live.connected_at is not None:
                await self.live.notice("No voice memo: nothing was recorded after the tone.")
            return
        data = encode_ogg_opus(self.recording)
        where = await self.host.upload(
            self.live.call.room_id,
            data,
            self.live.call.our_user,
            mime_type="audio/ogg",
            filename="voice-memo.ogg",
        )
        duration_ms = int(seconds * 1000)
        await self.live.send(
            "m.room.message",
            {
                "msgtype": "m.audio",
                "body": "Voice message",
                **where,  # url, or file in an encrypted room
                "info": {"mimetype": "audio/ogg", "size": len(data), "duration": duration_ms},
                "org.matrix.msc1767.audio": {
                    "duration": duration_ms,
                    "waveform": waveform(self.recording),
                },
                "org.matrix.msc1767.text": "Voice message",
                "org.matrix.msc3245.voice": {},
            },
        )


class ConferenceCall(CallMode):
    """One participant of a room's conference: hears everyone else, mixed."""

    name = "conference"

    def __init__(self, host: CallHost, live: ModeCall) -> None:
        super().__init__(host, live)
        self.conference = host.conference(live.call.key)
        self.participant = self.conference.join(live.key, live.call.their_user)
        self.track = self.participant.outbound

    def on_audio(self, samples: array) -> None:
        self.participant.inbound.feed(samples)

    def on_connected(self) -> None:
        count = len(self.conference.participants)
        self.host.announce_soon(
            self.live,
            f"{self.live.call.their_user} joined the conference ({count} connected).",
        )

    async def on_end(self, reason: str) -> None:
        mixer = self.conference
        await mixer.leave(self.live.key)
        if not mixer.participants:
            self.live.ctx.log.info(
                "conference mixer idle",
                conference=mixer.room_id,
                ticks=mixer.ticks,
                late_ticks=mixer.late_ticks,
                max_lateness_ms=round(mixer.max_lateness_ms, 1),
                most_participants=mixer.most_participants,
            )
        if self.live.connected_at is not None:
            count = len(self.conference.participants)
            await self.host.announce(
                self.live,
                f"{self.live.call.their_user} left the conference ({count} connected).",
            )


MODES: dict[str, type[CallMode]] = {m.name: m for m in (EchoTest, VoiceMemo, ConferenceCall)}
