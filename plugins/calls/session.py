"""One peer connection (aiortc) and the numbers a quality report needs."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from .signalling import Candidate


@dataclass
class Quality:
    """What the WebRTC statistics say about a call (None when not measured)."""

    packets_received: int = 0
    packets_lost: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0  # on the wire (SRTP, DTLS, STUN), both media directions together
    bytes_received: int = 0
    jitter_ms: float | None = None
    rtt_ms: float | None = None

    @property
    def loss_percent(self) -> float:
        total = self.packets_received + self.packets_lost
        return 100.0 * self.packets_lost / total if total else 0.0


def _is_address(host: str) -> bool:
    if host.endswith(".local"):
        return True  # an mDNS name, as browsers hide their host addresses
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class MediaSession:
    """An aiortc peer connection sending ``track`` and handing remote tracks to
    ``on_track``; ``on_state`` gets the connection state as it changes."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        track: MediaStreamTrack,
        on_track: Callable[[MediaStreamTrack], None],
        on_state: Callable[[str], None],
    ) -> None:
        self.pc = RTCPeerConnection(configuration)
        self.track = track
        self.pc.addTrack(track)
        self.quality = Quality()
        self.pc.on("track", on_track)
        self.pc.on("connectionstatechange", lambda: on_state(self.pc.connectionState))

    async def answer(self, offer_sdp: str) -> str:
        """Take an offer; returns our answer SDP with every candidate gathered."""
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def add_candidates(self, candidates: list[Candidate] | tuple[Candidate, ...]) -> int:
        """Add trickled candidates; an empty one is end-of-candidates. Returns how many
        were unusable (logged by the caller, never fatal: the others may still work)."""
        bad = 0
        for item in candidates:
            if item.is_end:
                await self.pc.addIceCandidate(None)
                continue
            try:
                candidate = candidate_from_sdp(item.candidate.removeprefix("candidate:"))
                if not _is_address(candidate.ip):
                    raise ValueError(f"not an IP address or mDNS name: {candidate.ip!r}")
                candidate.sdpMid = item.sdp_mid
                candidate.sdpMLineIndex = item.sdp_mline_index
                await self.pc.addIceCandidate(candidate)
            except Exception:  # aiortc asserts on some garbage: skip just this one
                bad += 1
        return bad

    async def measure(self) -> Quality:
        """Refresh :attr:`quality` from the statistics (kept for the report at the end).

        aiortc keeps its counters after the connection closed (the other side hanging up
        closes it first), so this reads the final figures also then."""
        with contextlib.suppress(Exception):
            report = await self.pc.getStats()
            for stats in report.values():
                kind = getattr(stats, "type", "")
                if kind == "inbound-rtp":
                    self.quality.packets_received = stats.packetsReceived
                    self.quality.packets_lost = max(0, stats.packetsLost)
                    # RTP timestamp units at Opus' 48 kHz clock
                    self.quality.jitter_ms = stats.jitter / 48
                elif kind == "remote-inbound-rtp" and stats.roundTripTime is not None:
                    self.quality.rtt_ms = stats.roundTripTime * 1000
                elif kind == "outbound-rtp":
                    self.quality.packets_sent = stats.packetsSent
                elif kind == "transport":
                    self.quality.bytes_sent = stats.bytesSent
                    self.quality.bytes_received = stats.bytesReceived
        return self.quality

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
