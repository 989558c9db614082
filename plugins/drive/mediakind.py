"""What kind of media a file is, looked at three ways: its content, its name's
extension and its declared MIME type. The copyright rule takes the strictest answer, so
renaming a song to ``.txt`` or declaring it ``text/plain`` changes nothing.

Here are the cheap looks: extension, type, and the content's magic bytes (:func:`sniff`).
The content's full look adds a real demuxer: see :mod:`anywhere.plugins.drive.judge`. (A bare
MPEG audio frame header is two bytes that random content starts with one time in a few
hundred; MPEG audio without a tag is left to the demuxer, which checks frames decode.)

Kinds are the policy engine's vocabulary: audio, video, image, document, archive, other.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

AUDIO_EXT = {
    "mp3", "m4a", "aac", "flac", "ogg", "oga", "opus", "wav", "wma", "aif", "aiff", "mid",
    "midi", "amr", "ape", "alac",
}  # fmt: skip
VIDEO_EXT = {
    "mp4", "m4v", "mov", "avi", "mkv", "webm", "wmv", "flv", "mpg", "mpeg", "3gp", "ts", "ogv",
}  # fmt: skip
IMAGE_EXT = {"png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff", "heic", "svg"}
DOCUMENT_EXT = {
    "pdf", "txt", "md", "doc", "docx", "odt", "xls", "xlsx", "ods", "ppt", "pptx", "odp",
    "csv", "rtf", "hwp", "json", "xml", "html",
}  # fmt: skip
ARCHIVE_EXT = {"zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar"}
SEVERITY = ("audio", "video", "archive", "image", "document", "other")


@dataclass(frozen=True)
class MediaKinds:
    sniffed: str | None
    extension: str | None
    declared: str | None

    def facts(self) -> dict[str, str]:
        """As policy facts (``media_kind_sniffed`` ...), leaving out the unknown ones."""
        facts = {
            "media_kind_sniffed": self.sniffed,
            "media_kind_extension": self.extension,
            "media_kind_declared": self.declared,
        }
        return {k: v for k, v in facts.items() if v}

    def blocked_by(self, blocked: list[str]) -> tuple[str, str] | None:
        """(kind, which look found it) for the first look naming a blocked kind."""
        for kind, how in (
            (self.sniffed, "its content"),
            (self.extension, "its extension"),
            (self.declared, "its declared type"),
        ):
            if kind and kind in blocked:
                return kind, how
        return None


def kind_of_extension(name: str) -> str | None:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    for kind, table in (
        ("audio", AUDIO_EXT),
        ("video", VIDEO_EXT),
        ("image", IMAGE_EXT),
        ("document", DOCUMENT_EXT),
        ("archive", ARCHIVE_EXT),
    ):
        if ext in table:
            return kind
    return None


def kind_of_mime(mime: str | None) -> str | None:
    if not mime:
        return None
    major = mime.split("/", 1)[0].lower()
    if major in ("audio", "video", "image"):
        return major
    if mime in ("application/ogg",):
        return "audio"
    if mime.startswith("text/") or mime in ("application/pdf", "application/json"):
        return "document"
    if mime in ("application/zip", "application/x-tar", "application/gzip"):
        return "archive"
    return "other" if mime != "application/octet-stream" else None


def sniff(head: bytes) -> str | None:
    """The kind the first bytes of a file show (magic numbers), or None when they show
    nothing known. Only part of judging content: see
    :func:`anywhere.plugins.drive.judge.judge_prefix`."""
    if head.startswith(b"ID3") or head.startswith((b"fLaC", b"#!AMR", b"MThd")):
        return "audio"
    if head.startswith(b"OggS"):
        return "video" if b"theora" in head[:256] else "audio"
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WAVE":
            return "audio"
        if form == b"AVI ":
            return "video"
        if form == b"WEBP":
            return "image"
    if head.startswith((b"FORM",)) and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"avif"):
            return "image"  # HEIC/AVIF still pictures (phone photos); their sequences are video
        return "audio" if brand in (b"M4A ", b"M4B ", b"M4P ", b"F4A ") else "video"
    if head.startswith(b"\x1a\x45\xdf\xa3") or head.startswith(b"\x00\x00\x01\xba"):
        return "video"  # Matroska/WebM, MPEG program stream
    if head.startswith(b"0&\xb2u\x8ef\xcf\x11"):
        return "video"  # ASF (WMV/WMA): treated as video, the stricter
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head.startswith(b"%PDF"):
        return "document"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "archive"
    return None


def media_kinds(content: str | None, name: str, declared_mime: str | None) -> MediaKinds:
    """The three looks, given the kind judged from the content."""
    return MediaKinds(content, kind_of_extension(name), kind_of_mime(declared_mime))


def guess_mime(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
