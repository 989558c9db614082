"""Voice memos: ``!call memo`` makes the bot call you, record after a tone, and post the
recording as a voice message any client can play."""

from __future__ import annotations

import secrets

import pytest
from calls_peer import CallPeer, dominant_frequency
from nio import DownloadResponse

from anywhere.plugins.calls.audio import SAMPLE_RATE, decode_audio

pytestmark = pytest.mark.e2e


def is_voice_message(bot: str):
    return lambda e: (
        e.get("sender") == bot
        and e.get("type") == "m.room.message"
        and e["content"].get("msgtype") == "m.audio"
    )


async def test_a_voice_memo_is_posted_as_a_playable_voice_message_of_the_tone(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    phone = CallPeer(alice, room, tone_hz=660)
    await alice.send_text(room, "!call memo --seconds 2")
    invite = await phone.answer_next()
    assert invite["sender"] == calls_bot
    assert invite["content"]["invitee"] == alice.user_id
    assert invite["content"]["version"] == "1" and invite["content"]["party_id"]
    await phone.wait_connected()
    # the bot hangs up by itself once the memo is as long as asked
    hangup = await phone.wait_for(lambda e: e["type"] == "m.call.hangup", timeout=30)
    assert hangup["sender"] == calls_bot
    memo = await phone.wait_for_room(is_voice_message(calls_bot))
    await phone.close()
    content = memo["content"]
    assert "org.matrix.msc3245.voice" in content
    assert content["info"]["mimetype"] == "audio/ogg"
    assert content["info"]["duration"] == pytest.approx(2000, abs=100)
    waveform = content["org.matrix.msc1767.audio"]["waveform"]
    assert len(waveform) == 100 and all(0 <= w <= 1024 for w in waveform)
    download = await alice.client.download(mxc=content["url"])
    assert isinstance(download, DownloadResponse), download
    samples = decode_audio(download.body)
    assert len(samples) / SAMPLE_RATE == pytest.approx(2.0, abs=0.1)
    assert dominant_frequency(samples[SAMPLE_RATE // 2 :]) == pytest.approx(660, abs=10)


async def test_a_memo_for_someone_the_policy_refuses_is_not_called(person, calls_bot):
    blocked = await person(f"blocked_{secrets.token_hex(3)}")
    room = await blocked.dm(calls_bot)
    mark = blocked.mark(room)
    await blocked.send_text(room, "!call memo")
    reply = await blocked.wait_for_notice(room, calls_bot, "I can't call you", start=mark)
    assert "Wi-Fi" in reply["content"]["body"]
    assert not [e for e in blocked.timeline[room] if e.get("type") == "m.call.invite"]


async def test_a_memo_longer_than_the_limit_is_refused_with_the_limit(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    await alice.send_text(room, "!call memo --seconds 999")
    reply = await alice.wait_for_notice(room, calls_bot, "--seconds")
    assert "between 1 and 4" in reply["content"]["body"]


async def test_glare_the_persons_lower_call_id_wins_and_still_records_the_memo(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    phone = CallPeer(alice, room, tone_hz=523)
    await alice.send_text(room, "!call memo --seconds 2")
    bots_invite = await phone.wait_for(lambda e: e["type"] == "m.call.invite", any_call=True)
    # the person's client placed its own call at the same moment; its call_id (digits
    # first, as matrix-js-sdk makes them) sorts before the bot's, so the person's wins
    assert phone.call_id < bots_invite["content"]["call_id"]
    await phone.place(invitee=calls_bot)
    answer = await phone.wait_for(lambda e: e["type"] == "m.call.answer")
    assert answer["sender"] == calls_bot
    await phone.wait_connected()
    memo = await phone.wait_for_room(is_voice_message(calls_bot))
    await phone.close()
    assert memo["content"]["info"]["duration"] == pytest.approx(2000, abs=100)
    download = await alice.client.download(mxc=memo["content"]["url"])
    samples = decode_audio(download.body)
    assert dominant_frequency(samples[SAMPLE_RATE // 2 :]) == pytest.approx(523, abs=10)
    bots_call = bots_invite["content"]["call_id"]
    assert not [
        e
        for e in phone.events
        if e["content"].get("call_id") == bots_call
        and e is not bots_invite
        and e["type"] not in ("m.call.candidates",)
    ], "the bot's own invite is dropped silently"


async def test_calling_the_memo_user_in_a_room_records_a_memo_there(person, calls_stack):
    alice = await person()
    memo_user = f"@{calls_stack.config['appservice']['ghost_prefix']}calls_memo:localhost"
    room = await alice.create_room([memo_user], name="Memos")
    await alice.wait_joined(room, memo_user)
    phone = CallPeer(alice, room, tone_hz=587)
    await phone.place(invitee=memo_user)
    answer = await phone.wait_for(lambda e: e["type"] == "m.call.answer")
    assert answer["sender"] == memo_user
    await phone.wait_connected()
    # the caller speaks until the memo user hangs up at the limit (memo_max_seconds: 4
    # in the test bridge), so the memo's length depends on no one's timing
    hangup = await phone.wait_for(lambda e: e["type"] == "m.call.hangup", timeout=30)
    assert hangup["sender"] == memo_user
    await phone.close()
    memo = await alice.wait_for(room, is_voice_message(memo_user))
    assert memo["content"]["info"]["duration"] == pytest.approx(4000, abs=100)
    download = await alice.client.download(mxc=memo["content"]["url"])
    samples = decode_audio(download.body)
    assert dominant_frequency(samples[SAMPLE_RATE // 4 :]) == pytest.approx(587, abs=10)


async def test_the_memo_user_declines_invites_from_people_without_permission(person, calls_stack):
    outsider = await person("outsider")  # "none" in the calls tests' permissions
    memo_user = f"@{calls_stack.config['appservice']['ghost_prefix']}calls_memo:localhost"
    room = await outsider.create_room([memo_user])
    await outsider.wait_for(
        room,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == memo_user
            and e["content"].get("membership") == "leave"
        ),
    )


async def test_call_without_an_argument_says_what_can_be_started(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    await alice.send_text(room, "!call")
    reply = await alice.wait_for_notice(room, calls_bot, "!call memo")
    body = reply["content"]["body"]
    assert "!call conference" in body and "what" not in body
