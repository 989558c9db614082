"""Call events the bridge cannot use get an answer, never silence: an unusable invite is
refused with the reason, a garbage ICE candidate costs only itself, and an unusable
renegotiation ends the call cleanly."""

from __future__ import annotations

import pytest
from calls_peer import END, CallPeer

from anywhere.plugins.calls.sdp import candidates_in_sdp, without_candidates

pytestmark = pytest.mark.e2e

SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def is_call(kind: str, sender: str, call: CallPeer):
    return lambda e: (
        e["type"] == f"m.call.{kind}"
        and e["sender"] == sender
        and e["content"].get("call_id") == call.call_id
    )


def notice_with(sender: str, text: str):
    return lambda e: e.get("sender") == sender and text in str(e.get("content", {}).get("body"))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"offer": {"type": "offer"}}, "offer.sdp"),
        ({"offer": {"type": "offer", "sdp": 42}}, "offer.sdp"),
        ({"offer": {"type": "offer", "sdp": SDP}, "version": ["1"]}, "version"),
        ({"offer": {"type": "offer", "sdp": SDP}, "lifetime": -5}, "lifetime"),
        ({"offer": {"type": "answer", "sdp": SDP}}, "offer.type"),
    ],
    ids=["no-sdp", "sdp-not-a-string", "version-a-list", "negative-lifetime", "not-an-offer"],
)
async def test_an_unusable_invite_is_rejected_with_the_reason(person, calls_bot, fields, problem):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    content = {"call_id": call.call_id, "version": "1", "party_id": call.party_id}
    await alice.client.room_send(room, "m.call.invite", content | {"invitee": calls_bot} | fields)
    reject = await call.wait_for(is_call("reject", calls_bot, call))
    assert reject["content"]["version"] == "1"
    notice = await call.wait_for_room(notice_with(calls_bot, "the invite cannot be used"))
    assert problem in notice["content"]["body"]
    await call.close()


async def test_an_unusable_version_0_invite_is_hung_up(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    content = {"call_id": call.call_id, "version": 0, "offer": {"type": "offer"}}
    await alice.client.room_send(room, "m.call.invite", content)
    hangup = await call.wait_for(is_call("hangup", calls_bot, call))
    assert hangup["content"]["version"] == 0
    await call.wait_for_room(notice_with(calls_bot, "offer.sdp"))
    await call.close()


async def test_an_invite_without_call_id_is_ignored(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    mark = alice.mark(room)
    await alice.client.room_send(room, "m.call.invite", {"version": "1", "offer": {}})
    await alice.send_text(room, "!ping marker")  # handled after the invite
    await alice.wait_for_notice(room, calls_bot, "pong marker", start=mark)
    sent = [e for e in alice.timeline[room][mark:] if e["sender"] == calls_bot]
    assert [e["content"].get("body") for e in sent] == ["pong marker"]


async def test_a_garbage_candidate_is_skipped_and_the_next_ones_used(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    call.deaf_to_candidates = True  # media connects only if the bot uses ours
    await call.pc.setLocalDescription(await call.pc.createOffer())
    full = call.pc.localDescription.sdp
    await call.send(
        "invite",
        lifetime=60_000,
        invitee=calls_bot,
        offer={"type": "offer", "sdp": without_candidates(full)},
    )
    await call.wait_for(is_call("answer", calls_bot, call))
    garbage = [
        {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ", "sdpMid": "0", "sdpMLineIndex": 0},
        {"candidate": "candidate:1 1 udp 1 nowhere 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0},
        {"candidate": 7, "sdpMid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host"},
    ]
    real = [c.to_content() for c in candidates_in_sdp(full)]
    # the only usable candidates come after the garbage, in the same event
    await call.send("candidates", candidates=[*garbage, *real, END])
    await call.wait_connected()
    await call.hear(0.5)
    await call.hang_up()
    await alice.wait_for_notice(room, calls_bot, "Call quality test")


async def test_a_renegotiation_with_garbage_sdp_hangs_up_with_the_reason(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await call.wait_connected()
    garbage = "v=0\r\nthis is not an offer\r\n"
    await call.send("negotiate", description={"type": "offer", "sdp": garbage}, lifetime=10_000)
    hangup = await call.wait_for(is_call("hangup", calls_bot, call))
    assert hangup["content"]["reason"] == "unknown_error"
    notice = await call.wait_for_room(notice_with(calls_bot, "the new offer cannot be used"))
    assert "no audio line" in notice["content"]["body"]
    assert not [e for e in call.events if e["type"] == "m.call.negotiate"]
    await call.close()


async def test_a_renegotiation_that_cannot_be_read_hangs_up_with_the_reason(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await call.wait_connected()
    await call.send("negotiate", description={"type": "offer", "sdp": "hello"}, lifetime=10_000)
    hangup = await call.wait_for(is_call("hangup", calls_bot, call))
    assert hangup["content"]["reason"] == "unknown_error"
    notice = await call.wait_for_room(notice_with(calls_bot, "the new offer cannot be used"))
    assert "description.sdp" in notice["content"]["body"]
    await call.close()
