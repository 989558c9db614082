"""aiortc audio tracks: what the bridge sends (tones, echo, mixes) and how it listens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .audio import FRAME_SAMPLES, SAMPLE_RATE, MonoReader, silence, to_frame, tone


class SampleFifo:
    """Mono samples waiting to be sent, bounded so that latency cannot grow."""

    def __init__(self, max_samples: int = SAMPLE_RATE // 4) -> None:
        self.buffer = array("h")
        self.max_samples = max_samples

    def __len__(self) -> int:
        return len(self.buffer)

    def feed(self, samples: array) -> None:
        self.buffer.extend(samples)
        excess = len(self.buffer) - self.max_samples
        if excess > 0:
            del self.buffer[:excess]

    def take(self, count: int = FRAME_SAMPLES) -> array:
        """``count`` samples, padded with silence when there are not enough yet."""
        out = self.buffer[:count]
        del self.buffer[:count]
        if len(out) < count:
            out.extend(silence(count - len(out)))
        return out


class PacedTrack(MediaStreamTrack):
    """An audio track producing one 20 ms frame on a fixed schedule from ``source()``.

    The schedule is absolute (start + n × 20 ms), so a late frame is followed by an
    early one and the stream never drifts.
    """

    kind = "audio"

    def __init__(self, source: Callable[[], array]) -> None:
        super().__init__()
        self.source = source
        self._start: float | None = None
        self._pts = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = to_frame(self.source(), self._pts)
        self._pts += FRAME_SAMPLES
        return frame


class Greeting:
    """A short tone at the start of a call, then whatever ``after`` gives."""

    def __init__(self, freq: float, ms: int, after: Callable[[], array]) -> None:
        self.remaining = SAMPLE_RATE * ms // 1000
        self.freq = freq
        self.after = after
        self._played = 0

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    def __call__(self) -> array:
        if self.remaining <= 0:
            return self.after()
        samples = tone(self.freq, FRAME_SAMPLES, start=self._played, amplitude=0.2)
        self._played += FRAME_SAMPLES
        self.remaining -= FRAME_SAMPLES
        return samples


class QueueTrack(MediaStreamTrack):
    """An audio track fed frame by frame by someone else's clock (the conference mixer)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[array] = asyncio.Queue(maxsize=10)
        self._pts = 0

    def put(self, samples: array) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # the peer is not reading: keep the newest audio
        self.queue.put_nowait(samples)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        samples = await self.queue.get()
        frame = to_frame(samples, self._pts)
        self._pts += FRAME_SAMPLES
        return frame


async def listen(track: MediaStreamTrack, sink: Callable[[array], None]) -> None:
    """Read a remote track until it ends, handing mono 48 kHz samples to ``sink``."""
    reader = MonoReader()
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            sink(reader.samples(frame))
