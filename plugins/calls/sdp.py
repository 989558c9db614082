"""Small SDP helpers: the candidates aiortc put in its SDP, and the stream ids there."""

from __future__ import annotations

from typing import Any

from aiortc.sdp import SessionDescription

from .signalling import Candidate


def candidates_in_sdp(sdp: str) -> list[Candidate]:
    """Every ``a=candidate`` line, with the mid and m-line index it belongs to.

    aiortc gathers all its candidates before it returns a description, so the bridge
    sends these in one ``m.call.candidates`` event followed by end-of-candidates, for
    clients that only look at trickled candidates.
    """
    found: list[Candidate] = []
    mline, mid = -1, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline, mid = mline + 1, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.startswith("a=candidate:") and mline >= 0:
            found.append(Candidate(line[2:].strip(), mid, mline))
    # a=mid comes after a=candidate in some SDPs: fill it in per m-line afterwards
    mids = mids_by_mline(sdp)
    return [
        Candidate(c.candidate, mids.get(c.sdp_mline_index or 0), c.sdp_mline_index) for c in found
    ]


def mids_by_mline(sdp: str) -> dict[int, str]:
    mids: dict[int, str] = {}
    mline = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline += 1
        elif line.startswith("a=mid:") and mline >= 0:
            mids[mline] = line[len("a=mid:") :].strip()
    return mids


def stream_ids(sdp: str) -> list[str]:
    """The MediaStream ids (``a=msid:<stream> <track>``) in an SDP, in order, once each."""
    ids: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("a=msid:"):
            stream = line[len("a=msid:") :].split()[0]
            if stream not in ids and stream != "-":
                ids.append(stream)
    return ids


def without_candidates(sdp: str) -> str:
    """The SDP without candidate lines (what a trickling client puts in its invite)."""
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(lines) + "\r\n"


def usermedia_metadata(sdp: str, *, audio_muted: bool = False) -> dict[str, dict[str, object]]:
    """``sdp_stream_metadata`` for our answer: every stream in our SDP is user media."""
    return {
        stream: {"purpose": "m.usermedia", "audio_muted": audio_muted, "video_muted": True}
        for stream in stream_ids(sdp)
    }


def offer_problem(offer_sdp: str, current: Any = None) -> str | None:
    """What makes a renegotiation offer unusable, or None. ``current`` is the remote
    description in use (aiortc's ``RTCSessionDescription``): a new offer keeps its media
    lines, in order and kind, as RFC 8829 requires; it may add lines, never drop them."""
    try:
        kinds = [media.kind for media in SessionDescription.parse(offer_sdp).media]
    except Exception as exc:
        return f"its SDP cannot be read ({type(exc).__name__})"
    if "audio" not in kinds:
        return "its SDP has no audio line"
    if current is not None:
        before = [media.kind for media in SessionDescription.parse(current.sdp).media]
        if kinds[: len(before)] != before:
            return f"its media lines {kinds} do not keep the call's {before}"
    return None
