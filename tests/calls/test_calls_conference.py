"""Room audio conference: three people call the room's conference user and each hears
the two others, never themselves."""

from __future__ import annotations

import asyncio
import re

import pytest
from calls_peer import CallPeer

from anywhere.plugins.calls.audio import SAMPLE_RATE, goertzel_power

pytestmark = pytest.mark.e2e

TONES = (440, 660, 1000)


def loudness(samples, freq: float) -> float:
    """Power at ``freq`` relative to the strongest of the three test tones."""
    rate = SAMPLE_RATE // 6
    decimated = samples[::6]
    powers = {f: goertzel_power(decimated, rate, f) for f in TONES}
    return powers[freq] / (max(powers.values()) or 1.0)


async def test_three_callers_each_hear_the_two_others_and_not_themselves(person, calls_bot):
    people = [await person() for _ in TONES]
    room = await people[0].create_room([calls_bot], name="Decision tonight")
    await people[0].wait_joined(room, calls_bot)
    for other in people[1:]:
        await people[0].client.room_invite(room, other.user_id)
        await other.client.join(room)
    await people[0].send_text(room, "!call conference")
    ready = await people[0].wait_for_notice(room, calls_bot, "Conference ready")
    conference_user = re.search(r"call (@\S+:localhost) to join", ready["content"]["body"])[1]

    calls = [CallPeer(p, room, tone_hz=hz) for p, hz in zip(people, TONES, strict=True)]
    for call in calls:
        await call.place(invitee=conference_user)
    for call in calls:
        answer = await call.wait_for(lambda e: e["type"] == "m.call.answer")
        assert answer["sender"] == conference_user
        await call.wait_connected()
    await calls[0].wait_for_room(
        lambda e: "joined the conference (3 connected)" in str(e.get("content", {}).get("body"))
    )
    await asyncio.sleep(1.0)  # let every stream reach the mixer
    heard = await asyncio.gather(*(call.hear(1.5) for call in calls))
    for own, samples in zip(TONES, heard, strict=True):
        others = [hz for hz in TONES if hz != own]
        for hz in others:
            assert loudness(samples, hz) > 0.2, f"the {own} Hz caller does not hear {hz} Hz"
        assert loudness(samples, own) < 0.01, f"the {own} Hz caller hears themselves"

    await calls[2].hang_up()
    await calls[0].wait_for_room(
        lambda e: "left the conference (2 connected)" in str(e.get("content", {}).get("body"))
    )
    for call in calls[:2]:
        await call.hang_up()
