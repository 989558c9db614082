"""Real media files for the copyright rule's tests, made with PyAV (FFmpeg's encoders
and muxers, no ffmpeg binary): a short tone as MP3, FLV or MPEG-TS."""

from __future__ import annotations

import array
import functools
import io
import math

import av

RATE = 44100


@functools.cache
def tone(container: str, codec: str = "libmp3lame", seconds: float = 0.5) -> bytes:
    """``seconds`` of a 440 Hz tone, encoded with ``codec`` into ``container``."""
    samples = int(RATE * seconds)
    pcm = array.array(
        "h", (int(9000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(samples))
    )
    frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
    frame.planes[0].update(pcm.tobytes())
    frame.sample_rate = RATE
    frame.pts = 0
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        for packet in stream.encode(frame):
            muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


def mp3() -> bytes:
    return tone("mp3")


def mp3_with_junk_in_front() -> bytes:
    """An MP3 whose first byte is junk: no magic at the start, FFmpeg plays it."""
    return b"\x00" + mp3()


def flv_audio() -> bytes:
    return tone("flv")


def mpegts_audio() -> bytes:
    return tone("mpegts", "mp2")


@functools.cache
def clip(container: str, codec: str = "mpeg4", frames: int = 12) -> bytes:
    """A short silent video: ``frames`` frames of 160x120 moving grey, 24 frames/s."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for n in range(frames):
            frame = av.VideoFrame(160, 120, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(n * 20) % 256]) * plane.buffer_size)
            frame.pts = n
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


def mpegts_video() -> bytes:
    return clip("mpegts")


@functools.cache
def animated_gif(frames: int = 6) -> bytes:
    """A small animated GIF: a picture, not a video, for the copyright rule."""
    out = io.BytesIO()
    with av.open(out, "w", format="gif") as muxer:
        stream = muxer.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb8"
        for n in range(frames):
            frame = av.VideoFrame(64, 48, "rgb24")
            frame.planes[0].update(bytes([n * 40 % 256]) * frame.planes[0].buffer_size)
            frame.pts = n
            for packet in stream.encode(frame.reformat(format="rgb8")):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


@functools.cache
def pictures(container: str, codec: str, frames: int) -> bytes:
    """``frames`` 64x64 pictures encoded with ``codec`` into ``container`` (AVIF: one is a
    still image, as phones take them; more are an image sequence)."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for n in range(frames):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([100 + n]) * plane.buffer_size)
            frame.pts = n
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


@functools.cache
def movie_with_sound(frames: int = 24) -> bytes:
    """A second of Matroska with Opus sound and MPEG-4 video, sound muxed first."""
    out = io.BytesIO()
    with av.open(out, "w", format="matroska") as muxer:
        sound = muxer.add_stream("libopus", rate=48000)
        sound.layout = "mono"
        picture = muxer.add_stream("mpeg4", rate=24)
        picture.width, picture.height, picture.pix_fmt = 160, 120, "yuv420p"
        for n in range(frames):
            chunk = av.AudioFrame(format="s16", layout="mono", samples=2000)
            chunk.planes[0].update(bytes(4000))
            chunk.sample_rate, chunk.pts = 48000, n * 2000
            for packet in sound.encode(chunk):
                muxer.mux(packet)
            frame = av.VideoFrame(160, 120, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([n * 9 % 256]) * plane.buffer_size)
            frame.pts = n
            for packet in picture.encode(frame):
                muxer.mux(packet)
        for stream in (sound, picture):
            for packet in stream.encode(None):
                muxer.mux(packet)
    return out.getvalue()
