"""A person's call client for the tests: aiortc media, matrix-nio signalling, and the
habits of matrix-js-sdk (Element's call code): the invite about 200 ms after
``setLocalDescription``, candidates trickled in batches after it, end-of-candidates,
``party_id`` = the device id, version "1", ``select_answer`` once answered.

The peer syncs the person's client in the background; while it runs, wait with
:meth:`CallPeer.wait_for` (which does not sync itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from array import array
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from anywhere.bridge.testing.stack import MatrixUser
from anywhere.plugins.calls.audio import SAMPLE_RATE, peak_frequency, tone
from anywhere.plugins.calls.sdp import candidates_in_sdp, without_candidates
from anywhere.plugins.calls.tracks import PacedTrack, listen

#: end-of-candidates as Chromium gives it to matrix-js-sdk
END = {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}


class ToneSource:
    def __init__(self, freq: float) -> None:
        self.freq, self.position = freq, 0

    def __call__(self) -> array:
        samples = tone(self.freq, 960, start=self.position)
        self.position += 960
        return samples


class CallPeer:
    """One call of one person, as caller (:meth:`place`) or callee (:meth:`answer_next`)."""

    def __init__(self, user: MatrixUser, room_id: str, *, tone_hz: float = 440) -> None:
        self.user = user
        self.room_id = room_id
        self.call_id = f"{int(time.time() * 1000)}{secrets.token_hex(8)}"
        self.party_id = user.client.device_id or "TESTDEVICE"
        self.pc = RTCPeerConnection()
        self.pc.addTrack(PacedTrack(ToneSource(tone_hz)))
        self.heard = array("h")
        self.events: list[dict[str, Any]] = []  # call events from the other side
        self.their_party: str | None = None
        self.answered = asyncio.Event()
        self.hung_up: dict[str, Any] | None = None
        self.invite_sent_at = 0.0
        self.auto_select = True  # send select_answer as soon as the answer arrives
        self.version: str | int = "1"
        self.deaf_to_candidates = False  # drop the other side's candidates (ICE failure)
        self._seen = user.mark(room_id)
        self._tasks: list[asyncio.Task] = []
        self.pc.on(
            "track",
            lambda track: self._tasks.append(asyncio.create_task(listen(track, self.heard.extend))),
        )
        self._pump = asyncio.create_task(self._sync())

    # ----- signalling -----
    async def send(self, kind: str, **fields: Any) -> str:
        content = {"call_id": self.call_id, "version": self.version, **fields}
        if self.version != 0:
            content["party_id"] = self.party_id
        response = await self.user.client.room_send(
            self.room_id, f"m.call.{kind}", content, ignore_unverified_devices=True
        )
        return response.event_id

    async def place(
        self,
        invitee: str | None,
        *,
        lifetime: int = 60_000,
        candidates_first: bool = False,
        extra_candidates: list[dict[str, Any]] | None = None,
        real_candidates: bool = True,
        invite_delay: float = 0.2,
    ) -> None:
        """Send an invite the way matrix-js-sdk does, with trickled candidates."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        full = self.pc.localDescription.sdp
        candidates = [c.to_content() for c in candidates_in_sdp(full)] if real_candidates else []
        candidates += extra_candidates or []
        invite: dict[str, Any] = {
            "lifetime": lifetime,
            "offer": {"type": "offer", "sdp": without_candidates(full)},
        }
        if invitee:
            invite["invitee"] = invitee
        if candidates_first:
            await self.send("candidates", candidates=[*candidates, END])
            await self.send("invite", **invite)
            return
        await asyncio.sleep(invite_delay)  # matrix-js-sdk waits for candidates first
        self.invite_sent_at = time.perf_counter()
        await self.send("invite", **invite)
        for start in range(0, len(candidates), 2):  # trickled in small batches
            await self.send("candidates", candidates=candidates[start : start + 2])
            await asyncio.sleep(0.05)
        await self.send("candidates", candidates=[END])

    async def renegotiate(self, direction: str) -> None:
        """Hold (``sendonly``) or resume (``sendrecv``) as Element does: a new offer in
        ``m.call.negotiate``."""
        self.pc.getTransceivers()[0].direction = direction
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        await self.send("negotiate", description={"type": "offer", "sdp": sdp}, lifetime=10_000)

    async def hang_up(self, reason: str = "user_hangup") -> None:
        await self.send("hangup", reason=reason)
        await self.close()

    async def answer_next(self, timeout: float = 30) -> dict[str, Any]:
        """Wait for an invite from the bridge and answer it (the person picks up)."""
        invite = await self.wait_for(lambda e: e["type"] == "m.call.invite", timeout, any_call=True)
        content = invite["content"]
        self.call_id, self.their_party = content["call_id"], content.get("party_id")
        await self.pc.setRemoteDescription(RTCSessionDescription(content["offer"]["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.send("answer", answer={"type": "answer", "sdp": self.pc.localDescription.sdp})
        self.answered.set()
        for event in self.events:
            if event["type"] == "m.call.candidates":
                await self._add_candidates(event["content"])
        return invite

    async def close(self) -> None:
        self._pump.cancel()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._pump, 5)

    # ----- what the person sees and hears -----
    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
        *,
        any_call: bool = False,
    ) -> dict[str, Any]:
        """The first call event of this call (or of any call) from the other side."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                same = any_call or event["content"].get("call_id") == self.call_id
                if same and predicate(event):
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(
            f"no matching call event within {timeout} s; saw {[e['type'] for e in self.events]}"
        )

    async def wait_for_room(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.user.timeline.get(self.room_id, []):
                if predicate(event):
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"nothing matching in the room within {timeout} s")

    async def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"media did not connect: {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def hear(self, seconds: float) -> array:
        """The next ``seconds`` of audio from the other side."""
        start = len(self.heard)
        needed = int(seconds * SAMPLE_RATE)
        deadline = time.monotonic() + seconds + 10
        while len(self.heard) - start < needed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.heard[start : start + needed]

    async def inbound(self) -> tuple[int, int]:
        """(packets received, packets lost) of the audio from the other side."""
        for stats in (await self.pc.getStats()).values():
            if getattr(stats, "type", "") == "inbound-rtp":
                return stats.packetsReceived, max(0, stats.packetsLost)
        return 0, 0

    # ----- internals -----
    async def _sync(self) -> None:
        while True:
            try:
                await self.user.sync_once(200)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            timeline = self.user.timeline.get(self.room_id, [])
            new, self._seen = timeline[self._seen :], len(timeline)
            for event in new:
                if (
                    event.get("type", "").startswith("m.call.")
                    and event.get("sender") != self.user.user_id
                ):
                    event["_seen_at"] = time.perf_counter()
                    self.events.append(event)
                    await self._react(event)

    async def _react(self, event: dict[str, Any]) -> None:
        content = event["content"]
        if content.get("call_id") != self.call_id:
            return
        kind = event["type"]
        if kind == "m.call.answer" and not self.answered.is_set():
            self.their_party = content.get("party_id")
            sdp = content["answer"]["sdp"]
            if self.deaf_to_candidates:
                sdp = without_candidates(sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
            self.answered.set()
            if self.auto_select and self.version != 0:  # version 0 has no select_answer
                await self.send("select_answer", selected_party_id=self.their_party)
            for earlier in self.events:
                if (
                    earlier["type"] == "m.call.candidates"
                    and earlier["content"].get("call_id") == self.call_id
                ):
                    await self._add_candidates(earlier["content"])
        elif kind == "m.call.candidates" and self.answered.is_set():
            await self._add_candidates(content)
        elif kind == "m.call.negotiate":
            description = content["description"]
            await self.pc.setRemoteDescription(
                RTCSessionDescription(description["sdp"], description["type"])
            )
        elif kind in ("m.call.hangup", "m.call.reject"):
            self.hung_up = event

    async def _add_candidates(self, content: dict[str, Any]) -> None:
        if self.deaf_to_candidates:
            return
        for item in content.get("candidates", []):
            if not item.get("candidate"):
                await self.pc.addIceCandidate(None)
                continue
            candidate = candidate_from_sdp(item["candidate"].removeprefix("candidate:"))
            candidate.sdpMid, candidate.sdpMLineIndex = (
                item.get("sdpMid"),
                item.get("sdpMLineIndex"),
            )
            await self.pc.addIceCandidate(candidate)


def dominant_frequency(samples: array) -> float:
    """The strongest frequency between 100 and 2000 Hz (decimated to 8 kHz for speed;
    the codec has already removed what would alias)."""
    return peak_frequency(samples[::6], SAMPLE_RATE // 6, 100, 2000, 10)
