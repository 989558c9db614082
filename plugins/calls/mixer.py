"""The conference mixer: every participant hears the sum of everyone else.

One clock per conference ticks every 20 ms on an absolute schedule; each tick takes one
frame from every participant (silence if theirs has not arrived), sums them once, and
gives each participant the sum minus their own frame ("mix-minus").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from operator import sub

from .audio import FRAME_MS, FRAME_SAMPLES, clip, silence
from .tracks import QueueTrack, SampleFifo


@dataclass
class Participant:
    user_id: str
    inbound: SampleFifo = field(default_factory=lambda: SampleFifo(FRAME_SAMPLES * 10))
    outbound: QueueTrack = field(default_factory=QueueTrack)


class Conference:
    """The people in one room's conference, and the task that mixes for them."""

    def __init__(self, room_id: str, *, clock: bool = True) -> None:
        self.room_id = room_id
        self.clock = clock  # False: the owner calls mix_once() itself (tests)
        self.participants: dict[str, Participant] = {}
        self.ticks = 0
        self.late_ticks = 0  # ticks more than one frame late, in steady state
        self.max_lateness_ms = 0.0
        self.most_participants = 0
        self._task: asyncio.Task | None = None
        # Someone joining costs a burst of CPU (ICE, DTLS, codecs): lateness within this
        # many seconds of a join is caught up by the absolute schedule and not counted.
        self.settle_seconds = 2.0
        self._settled_at = 0.0

    def join(self, key: str, user_id: str) -> Participant:
        participant = Participant(user_id)
        self.participants[key] = participant
        self.most_participants = max(self.most_participants, len(self.participants))
        self._settled_at = time.monotonic() + self.settle_seconds
        if self.clock and (self._task is None or self._task.done()):
            # a new session of this room's conference: fresh figures
            self.ticks = self.late_ticks = 0
            self.most_participants = len(self.participants)
            self.max_lateness_ms = 0.0
            self._task = asyncio.create_task(self._run())
        return participant

    async def leave(self, key: str) -> None:
        self.participants.pop(key, None)
        if not self.participants and self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mix_once(self) -> None:
        """One tick: everybody's frame in, everybody's mix-minus out."""
        people = list(self.participants.values())
        frames = [p.inbound.take() for p in people]
        if not frames:
            return
        total = [sum(column) for column in zip(*frames, strict=True)] if len(frames) > 1 else None
        for person, own in zip(people, frames, strict=True):
            mix = clip(map(sub, total, own)) if total is not None else silence()
            person.outbound.put(mix)

    async def _run(self) -> None:
        start = time.monotonic()
        period = FRAME_MS / 1000
        while True:
            self.mix_once()
            self.ticks += 1
            due = start + self.ticks * period
            lateness = time.monotonic() - due
            if lateness > 0 and time.monotonic() > self._settled_at:
                self.max_lateness_ms = max(self.max_lateness_ms, lateness * 1000)
                if lateness > period:
                    self.late_ticks += 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))
