"""Audio as plain 16-bit PCM: tones, frames for aiortc, spectra, waveforms, Ogg/Opus.

Pure Python plus PyAV (which aiortc brings); numpy is not a dependency, so the spectral
check is a Goertzel filter over the frequencies of interest.
"""

from __future__ import annotations

import io
import math
from array import array
from fractions import Fraction

import av

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


def tone(freq: float, count: int, *, start: int = 0, amplitude: float = 0.3) -> array:
    """``count`` samples of a sine at ``freq`` Hz, continuing from sample ``start``."""
    scale = amplitude * 32767
    step = 2 * math.pi * freq / SAMPLE_RATE
    return array("h", (int(scale * math.sin(step * (start + i))) for i in range(count)))


def silence(count: int = FRAME_SAMPLES) -> array:
    return array("h", bytes(2 * count))


def to_frame(samples: array, pts: int) -> av.AudioFrame:
    """A mono s16 48 kHz frame for aiortc's encoder."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
    frame.planes[0].update(samples.tobytes())
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


class MonoReader:
    """Turns whatever frames a decoder gives (stereo, planar, other rates) into mono
    s16 samples at ``rate``."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)

    def samples(self, frame: av.AudioFrame) -> array:
        out = array("h")
        for converted in self.resampler.resample(frame):
            out.frombytes(bytes(converted.planes[0])[: converted.samples * 2])
        return out


def mix(total: list[int], samples: array) -> None:
    """Add ``samples`` into the running ``total`` (ints, no clipping yet)."""
    for i, value in enumerate(samples[: len(total)]):
        total[i] += value


def clip(values: list[int] | map) -> array:
    return array("h", (-32768 if v < -32768 else 32767 if v > 32767 else v for v in values))


def rms(samples: array) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def goertzel_power(samples: array, rate: int, freq: float) -> float:
    """Power of ``samples`` at ``freq`` (one DFT bin, computed in O(n))."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def peak_frequency(
    samples: array, rate: int, low: float = 100, high: float = 2000, step: float = 10
) -> float:
    """The frequency with the most power between ``low`` and ``high`` Hz."""
    best, best_power = low, -1.0
    freq = low
    while freq <= high:
        power = goertzel_power(samples, rate, freq)
        if power > best_power:
            best, best_power = freq, power
        freq += step
    return best


def waveform(samples: array, buckets: int = 100) -> list[int]:
    """MSC3246 waveform: ``buckets`` loudness values 0..1024, for the voice-message bar."""
    if not samples:
        return [0] * buckets
    size = max(1, len(samples) // buckets)
    levels = [rms(samples[i * size : (i + 1) * size]) for i in range(buckets)]
    top = max(levels) or 1.0
    return [min(1024, int(1024 * level / top)) for level in levels]


def encode_ogg_opus(samples: array, rate: int = SAMPLE_RATE) -> bytes:
    """Mono PCM to an Ogg/Opus file, the format Element records voice messages in."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = 32_000
        for start in range(0, len(samples), FRAME_SAMPLES):
            chunk = samples[start : start + FRAME_SAMPLES]
            if len(chunk) < FRAME_SAMPLES:
                chunk = chunk + silence(FRAME_SAMPLES - len(chunk))
            frame = to_frame(chunk, start)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def decode_audio(data: bytes, rate: int = SAMPLE_RATE) -> array:
    """Any audio file PyAV reads, as mono PCM at ``rate``."""
    reader = MonoReader(rate)
    out = array("h")
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            out.extend(reader.samples(frame))
    return out
