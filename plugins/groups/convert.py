"""Matrix event content ↔ :class:`Message`, both ways."""

from __future__ import annotations

import io
import json
import mimetypes
import re
from typing import Any

from .connector import FileData, Location, Message

FILE_MSGTYPES = ("m.image", "m.file", "m.audio", "m.video")
_GEO = re.compile(r"geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)")
_REPLY_HTML = re.compile(r"<mx-reply>.*?</mx-reply>", re.S)
# What phone voice recorders make (Conversations, Element, Signal, WhatsApp exports):
# an audio file of one of these types arriving from a network is shown in Matrix as a
# voice message. Music formats (MP3, FLAC, WAV) stay ordinary audio files.
VOICE_MEMO_TYPES = {
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/webm": ".weba",
    "audio/amr": ".amr",
    "audio/3gpp": ".3gp",
}


def strip_reply_fallback(body: str) -> str:
    """Remove the ``> <@someone> quoted`` lines clients put before a reply's text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def relates_to(content: dict[str, Any]) -> dict[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def reply_target(content: dict[str, Any]) -> str | None:
    reply = relates_to(content).get("m.in_reply_to")
    event_id = reply.get("event_id") if isinstance(reply, dict) else None
    return event_id if isinstance(event_id, str) else None


def edit_target(content: dict[str, Any]) -> str | None:
    rel = relates_to(content)
    if rel.get("rel_type") == "m.replace" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return None


def parse_location(content: dict[str, Any]) -> Location | None:
    match = _GEO.match(str(content.get("geo_uri", "")))
    if not match:
        return None
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Location(lat, lon, str(content.get("body", "")))


def matrix_to_message(event_id: str, content: dict[str, Any]) -> Message:
    """The text parts of a Matrix message (files are fetched by the hub)."""
    if edit_target(content) and isinstance(content.get("m.new_content"), dict):
        content = content["m.new_content"]
    body = content.get("body")
    text = strip_reply_fallback(body if isinstance(body, str) else "")
    html = None
    if content.get("format") == "org.matrix.custom.html" and isinstance(
        content.get("formatted_body"), str
    ):
        html = _REPLY_HTML.sub("", content["formatted_body"])
    message = Message(event_id, text, html)
    if content.get("msgtype") == "m.location":
        message.location = parse_location(content)
    return message


def message_to_content(message: Message, uploaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """Matrix content for a message from the network (``uploaded``: where its file went,
    ``{"url": mxc}`` or, in an encrypted room, ``{"file": {...}}``)."""
    if message.file is not None and uploaded:
        mimetype = message.file.mimetype
        kind = mimetype.split("/", 1)[0]
        msgtype = {"image": "m.image", "audio": "m.audio", "video": "m.video"}.get(kind, "m.file")
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": message.file.name,
            **uploaded,
            "info": {"mimetype": mimetype, "size": len(message.file.data)},
        }
        if is_voice_memo(mimetype):
            # MSC3245 voice message: Element shows a player with the duration
            duration = audio_duration_ms(message.file.data)
            content["org.matrix.msc3245.voice"] = {}
            content["org.matrix.msc1767.audio"] = {} if duration is None else {"duration": duration}
            if duration is not None:
                content["info"]["duration"] = duration
        return content
    if message.location is not None:
        loc = message.location
        return {
            "msgtype": "m.location",
            "body": loc.description or f"Location: {loc.geo_uri}",
            "geo_uri": loc.geo_uri,
        }
    content: dict[str, Any] = {"msgtype": "m.text", "body": message.text}
    if message.html:
        content |= {"format": "org.matrix.custom.html", "formatted_body": message.html}
    return content


def image_type(data: bytes) -> str | None:
    """The type of an avatar-sized image by its first bytes (PNG, JPEG, GIF, WebP)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_voice_memo(mimetype: str) -> bool:
    return mimetype.split(";", 1)[0].strip().lower() in VOICE_MEMO_TYPES


def audio_duration_ms(data: bytes) -> int | None:
    """An audio file's length, read from its container by PyAV (which aiortc brings);
    nothing is decoded. None when the file does not say or is not audio."""
    import av  # imported here: only files pay for it

    try:
        with av.open(io.BytesIO(data)) as container:
            if container.duration and container.duration > 0:
                return int(container.duration // 1000)  # microseconds
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.duration and stream.time_base:
                return int(stream.duration * stream.time_base * 1000)
    except (av.FFmpegError, ValueError, IndexError, OSError):
        pass
    return None


def file_message(event_id: str, content: dict[str, Any], data: bytes) -> Message:
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    name = str(content.get("filename") or content.get("body") or "file")
    mimetype = str(info.get("mimetype") or "application/octet-stream")
    if "." not in name.rsplit("/", 1)[-1]:
        # "Voice message" (Element's body for one) gets ".ogg": the other side's app
        # decides by the link's extension whether it can play it
        base = mimetype.split(";", 1)[0].strip().lower()
        extension = VOICE_MEMO_TYPES.get(base) or mimetypes.guess_extension(base)
        if extension:
            name += extension
    return Message(event_id, name, file=FileData(name, mimetype, data))


def reaction_id(target: str, who: str, key: str) -> str:
    """The message map's ID of one person's reaction ``key`` to ``target`` (a network
    message ID); ``who`` is ``m:`` and a Matrix user ID, or ``r:`` and a remote one."""
    return f"{reaction_prefix(target, who)}{json.dumps(key)}"


def reaction_prefix(target: str, who: str) -> str:
    return f"reaction {json.dumps(target)} {json.dumps(who)} "


def parse_reaction_id(map_id: str) -> tuple[str, str, str]:
    """``(target, who, key)`` of a ``reaction_id``."""
    _, rest = map_id.split(" ", 1)
    decoder = json.JSONDecoder()
    target, end = decoder.raw_decode(rest)
    who, end2 = decoder.raw_decode(rest, end + 1)
    return target, who, json.loads(rest[end2 + 1 :])
