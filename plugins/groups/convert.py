"""Matrix event content ↔ :class:`Message`, both ways."""

from __future__ import annotations

import re
from typing import Any

from .connector import FileData, Location, Message

FILE_MSGTYPES = ("m.image", "m.file", "m.audio", "m.video")
_GEO = re.compile(r"geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)")
_REPLY_HTML = re.compile(r"<mx-reply>.*?</mx-reply>", re.S)


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


def message_to_content(message: Message, mxc: str | None = None) -> dict[str, Any]:
    """Matrix content for a message from the network (``mxc``: its uploaded file)."""
    if message.file is not None and mxc:
        kind = message.file.mimetype.split("/", 1)[0]
        msgtype = {"image": "m.image", "audio": "m.audio", "video": "m.video"}.get(kind, "m.file")
        return {
            "msgtype": msgtype,
            "body": message.file.name,
            "url": mxc,
            "info": {"mimetype": message.file.mimetype, "size": len(message.file.data)},
        }
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


def file_message(event_id: str, content: dict[str, Any], data: bytes) -> Message:
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    name = str(content.get("filename") or content.get("body") or "file")
    mimetype = str(info.get("mimetype") or "application/octet-stream")
    return Message(event_id, name, file=FileData(name, mimetype, data))
