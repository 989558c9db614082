"""Element X places only MatrixRTC calls: when one starts in a room with one of the
bridge's call users, the room is told once what is not supported and what works."""

from __future__ import annotations

import pytest
from nio import RoomPutStateResponse

from anywhere.bridge.testing.stack import MatrixUser

pytestmark = pytest.mark.e2e


async def start_rtc_call(user: MatrixUser, room: str, event_type: str, device: str) -> None:
    """What Element X sends when it joins a room's call (MSC4143 per-device membership)."""
    content = {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device,
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [
            {
                "type": "livekit",
                "livekit_service_url": "https://livekit-jwt.example.org",
                "livekit_alias": room,
            }
        ],
    }
    response = await user.client.room_put_state(
        room, event_type, content, state_key=f"_{user.user_id}_{device}"
    )
    assert isinstance(response, RoomPutStateResponse), response


def is_rtc_notice(event: dict) -> bool:
    return "MatrixRTC call" in str(event.get("content", {}).get("body"))


def rtc_notices(user: MatrixUser, room: str) -> list[dict]:
    return [e for e in user.timeline.get(room, []) if is_rtc_notice(e)]


async def test_a_matrixrtc_call_with_the_bot_is_answered_once_with_what_works(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    await start_rtc_call(alice, room, "org.matrix.msc3401.call.member", "PHONE")
    notice = await alice.wait_for(room, is_rtc_notice)
    body = notice["content"]["body"]
    assert notice["sender"] == calls_bot
    assert "does not take part" in body and "Element Web" in body
    # again, from another device and with the stable event type: nothing more is said
    mark = alice.mark(room)
    await start_rtc_call(alice, room, "m.call.member", "TABLET")
    await alice.client.room_put_state(
        room, "org.matrix.msc3401.call.member", {}, state_key=f"_{alice.user_id}_PHONE"
    )
    await alice.send_text(room, "!ping after the calls")  # the later marker
    await alice.wait_for_notice(room, calls_bot, "pong after the calls", start=mark)
    assert len(rtc_notices(alice, room)) == 1


async def test_a_matrixrtc_call_with_the_memo_user_is_answered_by_it(person, memo_user):
    alice = await person()
    room = await alice.dm(memo_user)  # the bot is not in this room
    await start_rtc_call(alice, room, "m.call.member", "PHONE")
    notice = await alice.wait_for(room, is_rtc_notice)
    assert notice["sender"] == memo_user


async def test_someone_leaving_a_matrixrtc_call_is_not_told_anything(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    mark = alice.mark(room)
    await alice.client.room_put_state(
        room, "org.matrix.msc3401.call.member", {}, state_key=f"_{alice.user_id}_PHONE"
    )
    await alice.send_text(room, "!ping after leaving")
    await alice.wait_for_notice(room, calls_bot, "pong after leaving", start=mark)
    assert not rtc_notices(alice, room)
