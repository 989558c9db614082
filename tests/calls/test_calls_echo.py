"""Echo and quality test, end to end: a person's aiortc client calls the bot through a
real Synapse, like Element would, and what comes back is measured."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest
from calls_peer import CallPeer, dominant_frequency

from anywhere.plugins.calls.audio import rms

pytestmark = pytest.mark.e2e


async def mvoip_mb_used(stack, user_id: str) -> float:
    """The person's mobile-VoIP data this month, as the policy plugin's facts show it."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.bridge.url}/_anywhere/policy/facts",
            params={"user": user_id, "action": "call.place"},
            headers={"Authorization": f"Bearer {stack.bridge.ops_token}"},
        ) as resp,
    ):
        assert resp.status == 200
        return (await resp.json())["facts"]["mvoip_mb_used_this_month"]


async def test_the_echo_returns_the_callers_440_hz_tone_and_reports_quality(
    person, calls_bot, calls_stack
):
    alice = await person()
    assert await mvoip_mb_used(calls_stack, alice.user_id) == 0
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room, tone_hz=440)
    await call.place(invitee=calls_bot)
    answer = await call.wait_for(lambda e: e["type"] == "m.call.answer")
    assert answer["content"]["version"] == "1"
    assert answer["content"]["party_id"]
    metadata = answer["content"]["sdp_stream_metadata"]
    assert metadata and all(m["purpose"] == "m.usermedia" for m in metadata.values())
    for stream_id in metadata:
        assert f"a=msid:{stream_id} " in answer["content"]["answer"]["sdp"]
    candidates = await call.wait_for(lambda e: e["type"] == "m.call.candidates")
    sent = candidates["content"]["candidates"]
    assert sent[-1]["candidate"] == "", "our candidates end with end-of-candidates"
    assert all("127.0.0.1" in c["candidate"] for c in sent[:-1])
    await call.wait_connected()
    await call.hear(1.0)  # the greeting tone, then the echo starts
    echo = await call.hear(1.5)
    assert rms(echo) > 500, "the echo is silent"
    assert dominant_frequency(echo) == pytest.approx(440, abs=10)
    await call.hang_up()
    report = await alice.wait_for_notice(room, calls_bot, "Call quality test")
    body = report["content"]["body"]
    assert "round-trip time" in body and "jitter" in body and "packet loss" in body
    # the call's data (Opus both ways, ~2.5 s) counts towards the carrier quota facts
    used = await mvoip_mb_used(calls_stack, alice.user_id)
    assert 0.005 < used < 2, used


def is_call(kind: str, sender: str):
    return lambda e: e["type"] == f"m.call.{kind}" and e["sender"] == sender


async def assert_echo(call: CallPeer) -> None:
    await call.wait_connected()
    await call.hear(0.8)
    echo = await call.hear(1.0)
    assert rms(echo) > 500, "the echo is silent"
    assert dominant_frequency(echo) == pytest.approx(440, abs=10)


async def test_a_call_denied_by_policy_is_rejected_with_the_rules_reason(person, calls_bot):
    blocked = await person(f"blocked_{secrets.token_hex(3)}")
    room = await blocked.dm(calls_bot)
    call = CallPeer(blocked, room)
    await call.place(invitee=calls_bot)
    reject = await call.wait_for(is_call("reject", calls_bot))
    assert reject["content"]["version"] == "1"
    notice = await call.wait_for_room(
        lambda e: e["sender"] == calls_bot and "not answered" in str(e["content"].get("body"))
    )
    assert "calls only over Wi-Fi" in notice["content"]["body"]
    assert not [e for e in call.events if e["type"] == "m.call.answer"]
    await call.close()


async def test_candidates_sent_before_the_invite_are_used(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot, candidates_first=True)
    await assert_echo(call)
    await call.hang_up()


def of_call(call: CallPeer):
    return lambda e: e["content"].get("call_id") == call.call_id


def answer_of(call: CallPeer):
    return lambda e: of_call(call)(e) and e["type"] == "m.call.answer"


async def test_an_expired_invite_is_not_answered(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    stale = CallPeer(alice, room)
    await stale.place(invitee=calls_bot, lifetime=1)
    # a later call in the same room is answered; the bridge handles a room's events in
    # order, so once the stale call's own sync has seen that answer, it has seen
    # anything the bridge sent about the stale invite
    fresh = CallPeer(alice, room)
    await fresh.place(invitee=calls_bot)
    await fresh.wait_for(is_call("answer", calls_bot))
    await stale.wait_for(
        lambda e: of_call(fresh)(e) and e["type"] == "m.call.answer", any_call=True
    )
    assert not [e for e in stale.events if of_call(stale)(e)]
    await stale.close()
    await fresh.hang_up()


async def test_an_invite_for_someone_else_is_left_alone(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    other = CallPeer(alice, room)
    await other.place(invitee="@somebody_else:localhost")
    mine = CallPeer(alice, room)  # the later marker: answered, so the first was read
    await mine.place(invitee=calls_bot)
    await mine.wait_for(is_call("answer", calls_bot))
    await other.wait_for(answer_of(mine), any_call=True)
    assert not [e for e in other.events if of_call(other)(e)]
    await other.close()
    await mine.hang_up()


async def test_a_version_0_call_is_answered_in_version_0(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    call.version = 0
    await call.place(invitee=None)  # version 0 has no invitee: the bot is the only other member
    answer = await call.wait_for(is_call("answer", calls_bot))
    assert answer["content"]["version"] == 0 and "party_id" not in answer["content"]
    await assert_echo(call)
    await call.hang_up()


async def test_select_answer_for_another_party_ends_the_bots_side_silently(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    call.auto_select = False
    await call.place(invitee=calls_bot)
    await assert_echo(call)
    # another of the caller's devices had an answer too, and the caller picked that one
    await call.send("select_answer", selected_party_id="SOMEOTHERDEVICE")
    # the bot stops its media: its peer connection closes, which closes the caller's
    deadline = asyncio.get_running_loop().time() + 30
    while call.pc.connectionState not in ("closed", "failed"):
        assert asyncio.get_running_loop().time() < deadline, "the bot still sends audio"
        await asyncio.sleep(0.05)
    # a later marker: the bot answers a command sent after the select_answer, and the
    # caller's sync has seen that answer, so it has seen anything sent before it
    await alice.send_text(room, "!ping after select_answer")
    await call.wait_for_room(
        lambda e: e["sender"] == calls_bot and "pong after select_answer" in str(e["content"])
    )
    assert not [e for e in call.events if e["type"] == "m.call.hangup"]
    assert not [
        e
        for e in alice.timeline[room]
        if "Call quality test" in str(e.get("content", {}).get("body"))
    ]
    await call.close()


async def test_the_caller_hanging_up_mid_call_stops_the_echo(person, calls_bot, calls_stack):
    alice = await person()
    room = await alice.dm(calls_bot)
    await alice.send_text(room, "!network wifi")
    await alice.wait_for_notice(room, calls_bot, "Noted: you are on wifi")
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await assert_echo(call)
    mark = alice.mark(room)
    await call.send("hangup", reason="user_hangup")
    await alice.wait_for_notice(room, calls_bot, "Call quality test", start=mark)
    before = len(call.heard)
    await asyncio.sleep(1.0)
    assert len(call.heard) - before < 0.2 * 48_000, "the bot still sends audio"
    await call.close()
    # on Wi-Fi, the call used no mobile data
    assert await mvoip_mb_used(calls_stack, alice.user_id) == 0


async def test_ice_failure_ends_the_call_with_ice_failed(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    call.deaf_to_candidates = True  # neither side can reach the other
    nowhere = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
    await call.place(
        invitee=calls_bot,
        real_candidates=False,
        extra_candidates=[{"candidate": nowhere, "sdpMid": "0", "sdpMLineIndex": 0}],
    )
    hangup = await call.wait_for(is_call("hangup", calls_bot), timeout=60)
    assert hangup["content"]["reason"] == "ice_failed"
    await call.close()


async def test_hold_and_resume_are_renegotiated(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await assert_echo(call)
    for number, direction in enumerate(("sendonly", "sendrecv")):  # hold, then resume
        await call.renegotiate(direction)
        await call.wait_for(
            lambda e, n=number: len([x for x in call.events if x["type"] == "m.call.negotiate"]) > n
        )
        answer = [e for e in call.events if e["type"] == "m.call.negotiate"][number]
        expected = "recvonly" if direction == "sendonly" else "sendrecv"
        assert answer["content"]["description"]["type"] == "answer"
        assert f"a={expected}" in answer["content"]["description"]["sdp"]
    await assert_echo(call)
    await call.hang_up()


async def test_beyond_the_call_limit_the_bot_answers_busy(person, calls_bot):
    calls = []
    for _ in range(3):  # the test bridge carries 3 calls
        someone = await person()
        room = await someone.dm(calls_bot)
        call = CallPeer(someone, room)
        await call.place(invitee=calls_bot)
        await call.wait_for(is_call("answer", calls_bot))
        calls.append(call)
    late = await person()
    room = await late.dm(calls_bot)
    extra = CallPeer(late, room)
    await extra.place(invitee=calls_bot)
    hangup = await extra.wait_for(is_call("hangup", calls_bot))
    assert hangup["content"]["reason"] == "user_busy"
    assert not [e for e in extra.events if e["type"] == "m.call.answer"]
    await extra.close()
    for call in calls:
        await call.hang_up()


async def test_the_caller_leaving_the_room_ends_the_call(person, calls_bot):
    alice, bob = await person(), await person()
    room = await alice.create_room([calls_bot, bob.user_id], name="Leaving")
    await alice.wait_joined(room, calls_bot)
    await bob.client.join(room)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await assert_echo(call)
    await call.close()
    await alice.client.room_leave(room)
    hangup = await bob.wait_for(
        room,
        lambda e: (
            e.get("type") == "m.call.hangup"
            and e["sender"] == calls_bot
            and e["content"].get("call_id") == call.call_id
        ),
    )
    assert hangup["content"]["reason"] == "user_hangup"


async def test_an_offer_the_bridge_cannot_use_is_hung_up_with_unknown_error(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    no_ice = (
        "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
    )
    await call.send(
        "invite", lifetime=60_000, invitee=calls_bot, offer={"type": "offer", "sdp": no_ice}
    )
    hangup = await call.wait_for(is_call("hangup", calls_bot))
    assert hangup["content"]["reason"] == "unknown_error"
    await call.close()
    # the bridge is fine afterwards
    good = CallPeer(alice, room)
    await good.place(invitee=calls_bot)
    await assert_echo(good)
    await good.hang_up()


async def test_the_quality_report_counts_the_packets_up_to_the_hang_up(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await assert_echo(call)
    # as a browser hangs up: its connection closes first, the hangup event follows
    await call.pc.close()
    stats = {s.type: s for s in (await call.pc.getStats()).values()}
    sent, received = stats["outbound-rtp"].packetsSent, stats["inbound-rtp"].packetsReceived
    mark = alice.mark(room)
    await call.send("hangup", reason="user_hangup")
    await call.close()
    report = await alice.wait_for_notice(room, calls_bot, "Call quality test", start=mark)
    counted = re.search(r"\((\d+) packets received, (\d+) sent\)", report["content"]["body"])
    bot_received, bot_sent = int(counted[1]), int(counted[2])
    assert abs(bot_received - sent) <= 3, (bot_received, sent)
    # the bot goes on sending until the caller's close reaches it: at least as many
    assert bot_sent >= received, (bot_sent, received)
