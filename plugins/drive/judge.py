"""What stored content is, judged by looking into it: magic bytes, and a real demuxer.

The copyright rule cannot rest on the first bytes alone: an MP3 with a junk byte in
front, FLV or MPEG-TS audio all pass prefix magic, and players still play them. So the
first :data:`PROBE_BYTES` of the content are also opened with FFmpeg's demuxers (PyAV,
which the bridge has through aiortc), in memory: content is audio or video when a
demuxer finds such a stream *and* its decoder turns the first packets into frames (a
demuxer alone finds "streams" in random bytes now and then). The stricter of the two
looks wins.

A hostile file cannot hang or exhaust the bridge: the demuxer only ever sees the bounded
prefix, in memory; one probe runs at a time, in a worker thread, within
:data:`PROBE_SECONDS` (FFmpeg's own interrupt timeout, and a wait that gives up); video
streams declaring more than :data:`MAX_PIXELS` are not decoded. Content that cannot be
judged in time is taken to be video (refused where video is), never waved through.

Content is addressed by its SHA-256, so each content is judged once and the answer kept
(``drive_content_kind``), with the judge's version: a better judge judges again.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import structlog
from mautrix.util.async_db import Database

from anywhere.storage.blobs import BlobStore

from .mediakind import SEVERITY, sniff

PROBE_BYTES = 1 << 20  # as much as FFmpeg's own format probing looks at
PROBE_SECONDS = 5.0
MAX_PACKETS = 200  # demuxed from the prefix at most
MIN_FRAMES = 3  # decoded frames that make a stream real
MAX_PIXELS = 3840 * 2160  # larger video frames are not decoded (judged video unseen)
JUDGE_VERSION = 1  # bump when judging changes: kept answers of older judges are redone
UNJUDGED = "video"  # what content that could not be judged in time counts as
# FFmpeg demuxers of pictures (single images, and GIF/APNG/WebP animations): images
IMAGE_FORMATS = frozenset({"image2", "gif", "apng", "webp", "ico"})

log = structlog.get_logger("anywhere.drive")


def _is_image_format(name: str) -> bool:
    return name.endswith("_pipe") or any(n in IMAGE_FORMATS for n in name.split(","))


def probe_media(data: bytes, timeout: float = PROBE_SECONDS) -> str | None:
    """``"audio"``, ``"video"`` or ``"image"`` as FFmpeg sees ``data`` (a prefix of
    the content), or None when no demuxer finds media in it that decodes. Blocking: run
    it in a thread."""
    import av  # heavy; only the bridge needs it, not the sync client

    try:
        container = av.open(
            io.BytesIO(data),
            "r",
            # all of the prefix (FFmpeg stops at its end; below 2048 it refuses to probe)
            options={"formatprobesize": str(PROBE_BYTES), "probesize": str(PROBE_BYTES)},
            timeout=timeout,
        )
    except (av.FFmpegError, ValueError, OSError, EOFError):
        return None
    with container:
        if _is_image_format(container.format.name):
            return "image"
        streams = [
            s
            for s in container.streams
            if s.type == "audio"
            or (s.type == "video" and not s.disposition & av.stream.Disposition.attached_pic)
        ]
        if not streams:
            return None
        for stream in streams:
            stream.codec_context.thread_count = 1
            if stream.type == "video":
                ctx: Any = stream.codec_context
                if (ctx.width or 0) * (ctx.height or 0) > MAX_PIXELS:
                    return "video"  # too large to decode safely: media all the same
        frames = {s.index: 0 for s in streams}
        has_video = any(s.type == "video" for s in streams)

        def settled() -> bool:  # video decodes, or audio does and there is no video
            real = {s.type for s in streams if frames[s.index] >= MIN_FRAMES}
            return "video" in real or ("audio" in real and not has_video)

        try:
            for count, packet in enumerate(container.demux(streams)):
                if count >= MAX_PACKETS:
                    break
                try:
                    frames[packet.stream.index] += len(packet.decode())
                except (av.FFmpegError, ValueError):
                    continue
                if settled():
                    break
        except (av.FFmpegError, ValueError, OSError, EOFError):
            pass  # the prefix ends mid-packet, or the rest is damaged: judge what decoded
        real = {s.type for s in streams if frames[s.index] >= MIN_FRAMES}
        if "video" in real:
            return "video"
        return "audio" if "audio" in real else None


def strictest(*kinds: str | None) -> str | None:
    """The kind that the copyright rule treats most strictly (see ``SEVERITY``)."""
    known = [k for k in kinds if k]
    return min(known, key=SEVERITY.index) if known else None


def judge_prefix(prefix: bytes, timeout: float = PROBE_SECONDS) -> str | None:
    """The kind of content starting with ``prefix``: magic bytes and the demuxer, the
    stricter winning. Blocking."""
    return strictest(sniff(prefix), probe_media(prefix[:PROBE_BYTES], timeout))


class ContentJudge:
    """Judges content by its bytes, once per content (kept by SHA-256)."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self._one_at_a_time = asyncio.Semaphore(1)

    async def judge(self, prefix: bytes) -> str | None:
        """The kind of content starting with ``prefix`` (bounded in size and time)."""
        async with self._one_at_a_time:
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(judge_prefix, prefix[:PROBE_BYTES]), PROBE_SECONDS * 2
                )
            except TimeoutError:
                log.warning(
                    "content could not be judged in time; it counts as media",
                    plugin="drive",
                    counted_as=UNJUDGED,
                    seconds=PROBE_SECONDS * 2,
                )
                return UNJUDGED

    async def kind(self, sha256: str) -> str | None:
        """The kind of stored content, judged now unless this judge did already."""
        row = await self.db.fetchrow(
            "SELECT kind, judge FROM drive_content_kind WHERE sha256 = $1", sha256
        )
        if row is not None and int(row["judge"]) == JUDGE_VERSION:
            return row["kind"]
        kind = await self.judge(await self.blobs.head(sha256, PROBE_BYTES))
        await self.remember(sha256, kind)
        return kind

    async def remember(self, sha256: str, kind: str | None) -> None:
        await self.db.execute(
            "INSERT INTO drive_content_kind (sha256, kind, judge) VALUES ($1, $2, $3) "
            "ON CONFLICT (sha256) DO UPDATE SET kind = excluded.kind, judge = excluded.judge",
            sha256,
            kind,
            JUDGE_VERSION,
        )

    async def forget(self, sha256: str) -> None:
        """The content was deleted: its kind goes too."""
        await self.db.execute("DELETE FROM drive_content_kind WHERE sha256 = $1", sha256)
