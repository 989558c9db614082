"""A call mode given by another plugin, as a third-party plugin would give it: the tests'
bridge loads this module as the plugin ``tone_mode_test`` (tests/calls/conftest.py makes
its entry point) and ``bot_modes`` sends it the bot's calls from ``@tonecaller*``.

It answers with a steady 660 Hz tone (neither the echo's greeting nor anything a test
caller sends), says through its :class:`CallHost` that it answered, and at the end posts
how long it heard sound: all three only happen when the call reached this mode."""

from __future__ import annotations

from array import array

from anywhere.bridge import hookimpl
from anywhere.plugins.calls.audio import FRAME_SAMPLES, SAMPLE_RATE, rms, tone
from anywhere.plugins.calls.modes import CallMode
from anywhere.plugins.calls.tracks import PacedTrack

TONE_HZ = 660


class ToneMode(CallMode):
    name = "tone"

    def __init__(self, host, live) -> None:
        super().__init__(host, live)
        self.played = 0
        self.loud = 0  # samples heard above a whisper
        self.track = PacedTrack(self.next_frame)

    def next_frame(self) -> array:
        samples = tone(TONE_HZ, FRAME_SAMPLES, start=self.played, amplitude=0.2)
        self.played += FRAME_SAMPLES
        return samples

    def on_audio(self, samples: array) -> None:
        if rms(samples) > 500:
            self.loud += len(samples)

    def on_connected(self) -> None:
        self.host.announce_soon(self.live, f"Tone mode answered {self.live.call.their_user}.")

    async def on_end(self, reason: str) -> None:
        await self.live.notice(f"Tone mode heard {self.loud / SAMPLE_RATE:.1f} s of sound.")


@hookimpl
def anywhere_calls_modes():
    return {"tone": ToneMode}
