"""Matrix 1:1 VoIP events (``m.call.*``, spec version "1" and 0), parsed from raw content.

Neither matrix-nio nor mautrix covers version 1 fully, so the bridge reads the content
itself and refuses malformed events with a reason that names the field. An invite that
cannot be used is refused (``m.call.reject``, a hangup for version 0) by the manager when
it is addressed to one of ours; other malformed events are logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CALL_EVENT_TYPES = (
    "m.call.invite",
    "m.call.candidates",
    "m.call.answer",
    "m.call.select_answer",
    "m.call.negotiate",
    "m.call.hangup",
    "m.call.reject",
    "m.call.sdp_stream_metadata_changed",
)

#: What a version-0 client implies when it sends no ``lifetime`` (matrix-js-sdk: 60 s).
DEFAULT_LIFETIME_MS = 60_000


class SignallingError(ValueError):
    """A call event that cannot be used; the message names the field that is wrong."""


@dataclass(frozen=True)
class Candidate:
    """One ICE candidate line as Matrix carries it (``candidate`` without ``a=``)."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None

    @property
    def is_end(self) -> bool:
        """An empty candidate string is end-of-candidates (spec v1.7+, matrix-js-sdk)."""
        return not self.candidate

    def to_content(self) -> dict[str, Any]:
        data: dict[str, Any] = {"candidate": self.candidate}
        if self.sdp_mid is not None:
            data["sdpMid"] = self.sdp_mid
        if self.sdp_mline_index is not None:
            data["sdpMLineIndex"] = self.sdp_mline_index
        return data


@dataclass(frozen=True)
class CallEvent:
    """One parsed ``m.call.*`` event. ``kind`` is the type without ``m.call.``."""

    kind: str
    room_id: str
    sender: str
    event_id: str
    call_id: str
    version: str
    party_id: str | None
    age_ms: int | None = None
    lifetime_ms: int | None = None
    invitee: str | None = None
    sdp_type: str | None = None
    sdp: str | None = None
    candidates: tuple[Candidate, ...] = ()
    skipped_candidates: int = 0  # items of a candidates event that could not be read
    selected_party_id: str | None = None
    reason: str | None = None
    stream_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_v1(self) -> bool:
        return self.version != "0"

    @property
    def end_of_candidates(self) -> bool:
        return any(c.is_end for c in self.candidates)


def _str(content: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = content.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise SignallingError(f"{key}: expected a non-empty string, found {value!r}")
    return value


def _version(content: dict[str, Any]) -> str:
    value = content.get("version", 0)
    if value in (0, "0"):
        return "0"
    if isinstance(value, str) and value:
        return value  # "1" and any later string version are handled as version 1
    raise SignallingError(f"version: expected 0 or a string such as '1', found {value!r}")


def _description(content: dict[str, Any], key: str, want: str | None) -> tuple[str, str]:
    desc = content.get(key)
    if not isinstance(desc, dict):
        raise SignallingError(f"{key}: expected an object with type and sdp, found {desc!r}")
    sdp_type, sdp = desc.get("type"), desc.get("sdp")
    if want is not None and sdp_type is None:
        sdp_type = want  # some version-0 clients leave the type out of answers
    if sdp_type not in ("offer", "answer") or (want and sdp_type != want):
        raise SignallingError(
            f"{key}.type: expected {want or 'offer or answer'!r}, found {sdp_type!r}"
        )
    if not isinstance(sdp, str) or "v=0" not in sdp:
        raise SignallingError(f"{key}.sdp: expected an SDP text starting with 'v=0'")
    return sdp_type, sdp


def _candidates(content: dict[str, Any]) -> tuple[tuple[Candidate, ...], int]:
    """The usable candidates of a candidates event, and how many were skipped: one bad
    item does not cost the others (a client may send good ones after it)."""
    raw = content.get("candidates")
    if not isinstance(raw, list):
        raise SignallingError(f"candidates: expected a list, found {type(raw).__name__}")
    out, skipped = [], 0
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("candidate", ""), str):
            skipped += 1
            continue
        mid, index = item.get("sdpMid"), item.get("sdpMLineIndex")
        if mid is not None and not isinstance(mid, str):
            mid = str(mid)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            skipped += 1
            continue
        text = item.get("candidate", "").strip().removeprefix("a=")
        if text and mid is None and index is None:
            skipped += 1  # nothing says which media line it belongs to
            continue
        out.append(Candidate(text, mid, index))
    return tuple(out), skipped


def parse_call_event(raw: dict[str, Any]) -> CallEvent:
    """Parse one raw ``m.call.*`` event (as the homeserver sent it) or raise
    :class:`SignallingError` saying which field is wrong."""
    event_type = raw.get("type", "")
    if event_type not in CALL_EVENT_TYPES:
        raise SignallingError(f"type: expected one of {', '.join(CALL_EVENT_TYPES)}")
    content = raw.get("content")
    if not isinstance(content, dict):
        raise SignallingError("content: expected an object")
    unsigned = raw.get("unsigned") if isinstance(raw.get("unsigned"), dict) else {}
    age = unsigned.get("age")
    kind = event_type.removeprefix("m.call.")
    fields: dict[str, Any] = {
        "kind": kind,
        "room_id": raw.get("room_id", ""),
        "sender": raw.get("sender", ""),
        "event_id": raw.get("event_id", ""),
        "call_id": _str(content, "call_id"),
        "version": _version(content),
        "party_id": _str(content, "party_id", required=False),
        "age_ms": age if isinstance(age, int) else None,
    }
    metadata = content.get("sdp_stream_metadata")
    if isinstance(metadata, dict):
        fields["stream_metadata"] = metadata
    if kind == "invite":
        fields["sdp_type"], fields["sdp"] = _description(content, "offer", "offer")
        fields["lifetime_ms"] = _lifetime(content)
        fields["invitee"] = _str(content, "invitee", required=False)
    elif kind == "answer":
        fields["sdp_type"], fields["sdp"] = _description(content, "answer", "answer")
    elif kind == "negotiate":
        fields["sdp_type"], fields["sdp"] = _description(content, "description", None)
        fields["lifetime_ms"] = _lifetime(content)
    elif kind == "candidates":
        fields["candidates"], fields["skipped_candidates"] = _candidates(content)
    elif kind == "select_answer":
        fields["selected_party_id"] = _str(content, "selected_party_id")
    elif kind in ("hangup", "reject"):
        reason = content.get("reason")
        fields["reason"] = reason if isinstance(reason, str) else None
    elif kind == "sdp_stream_metadata_changed" and not isinstance(metadata, dict):
        raise SignallingError("sdp_stream_metadata: expected an object keyed by stream id")
    return CallEvent(**fields)


def _lifetime(content: dict[str, Any]) -> int:
    value = content.get("lifetime")
    if value is None:
        return DEFAULT_LIFETIME_MS
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SignallingError(f"lifetime: expected milliseconds (a number >= 0), found {value!r}")
    return int(value)


def call_content(call_id: str, party_id: str, version: str, **extra: Any) -> dict[str, Any]:
    """The fields every call event we send carries (version 0 gets the integer 0)."""
    content: dict[str, Any] = {"call_id": call_id, "version": 0 if version == "0" else version}
    if version != "0":
        content["party_id"] = party_id
    return content | extra
