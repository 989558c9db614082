"""Calls in encrypted rooms (issue 16): the memo user has a device of its own, made when
it is invited into an encrypted room, so it reads the encrypted ``m.call.*`` events of a
person whose client encrypts (matrix-nio with vodozemac), and its answer, hangup and memo
go out encrypted (the recording's file too, through bridge.media.upload as the memo
user)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets

import aiohttp
import pytest
import vodozemac
from calls_peer import CallPeer, dominant_frequency
from nio import DownloadResponse
from nio.crypto.attachments import decrypt_attachment

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.plugins.calls.audio import SAMPLE_RATE, decode_audio

pytestmark = pytest.mark.e2e


def sent_in_plain_text(person: EncryptedPerson, room: str, sender: str) -> list[dict]:
    """The events other than state that ``sender`` sent into ``room`` unencrypted."""
    return [
        e
        for e in person.timeline[room]
        if e.get("sender") == sender and e.get("state_key") is None and not e.get("decrypted")
    ]


async def test_calling_the_memo_user_in_an_encrypted_dm_is_answered_and_the_memo_is_encrypted(
    calls_stack, memo_user, tmp_path
):
    localpart = f"enc_{secrets.token_hex(3)}"
    alice = await EncryptedPerson.register(calls_stack, localpart, tmp_path / localpart)
    try:
        room = await alice.create_encrypted_room([memo_user], direct=True)
        await alice.wait_joined(room, memo_user)
        phone = CallPeer(alice, room, tone_hz=587)
        await phone.place(invitee=memo_user)
        answer = await phone.wait_for(lambda e: e["type"] == "m.call.answer")
        assert answer["sender"] == memo_user
        assert answer.get("decrypted") is True  # it came encrypted, and Alice read it
        await phone.wait_connected()
        hangup = await phone.wait_for(lambda e: e["type"] == "m.call.hangup", timeout=30)
        assert hangup["sender"] == memo_user and hangup.get("decrypted") is True
        await phone.close()
        memo = await alice.wait_for(
            room,
            lambda e: (
                e.get("sender") == memo_user
                and e.get("type") == "m.room.message"
                and e["content"].get("msgtype") == "m.audio"
            ),
        )
        assert memo.get("decrypted") is True
        content = memo["content"]
        assert "url" not in content  # the recording itself is encrypted too
        file = content["file"]
        download = await alice.client.download(mxc=file["url"])
        assert isinstance(download, DownloadResponse), download
        ogg = decrypt_attachment(
            download.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
        )
        samples = decode_audio(ogg)
        assert len(samples) / SAMPLE_RATE == pytest.approx(
            content["info"]["duration"] / 1000, abs=0.1
        )
        assert dominant_frequency(samples[SAMPLE_RATE // 4 :]) == pytest.approx(587, abs=10)
        # nothing from the memo user arrived in plain text or unreadable
        assert not alice.undecryptable.get(room)
        assert sent_in_plain_text(alice, room, memo_user) == []
    finally:
        await alice.close()


async def test_after_a_restart_the_memo_users_device_reads_a_new_room_key(
    calls_stack, memo_user, tmp_path
):
    """The memo user's account is loaded at start-up (no new device, no unreadable call):
    a room key Alice's client sends after the restart reaches the memo user's device."""
    localpart = f"enc_{secrets.token_hex(3)}"
    alice = await EncryptedPerson.register(calls_stack, localpart, tmp_path / localpart)
    try:
        room = await alice.create_encrypted_room([memo_user], direct=True)
        await alice.wait_joined(room, memo_user)
        await alice.send_text(room, "before the restart")  # the memo user's Olm session
        await asyncio.to_thread(calls_stack.bridge.stop)
        await asyncio.to_thread(calls_stack.bridge.start)
        alice.client.olm.outbound_group_sessions.pop(room, None)  # a new room key is sent
        phone = CallPeer(alice, room, tone_hz=587)
        await phone.place(invitee=memo_user)
        answer = await phone.wait_for(lambda e: e["type"] == "m.call.answer")
        assert answer["sender"] == memo_user and answer.get("decrypted") is True
        await phone.hang_up()
        await phone.close()
    finally:
        await alice.close()


async def test_the_memo_users_one_time_keys_are_topped_up_from_its_own_counts(
    calls_stack, memo_user, tmp_path
):
    """Alice's client claims one of the memo user's one-time keys to share her room key;
    the count in the transaction carrying it makes the bridge upload another."""
    localpart = f"enc_{secrets.token_hex(3)}"
    alice = await EncryptedPerson.register(calls_stack, localpart, tmp_path / localpart)
    device_id = "AW" + hashlib.sha256(memo_user.encode()).hexdigest()[:10].upper()
    target = vodozemac.Account().max_number_of_one_time_keys // 2

    auth = {"Authorization": f"Bearer {calls_stack.config['appservice']['as_token']}"}

    async def memo_key_count() -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{calls_stack.synapse.url}/_matrix/client/v3/keys/upload",
                params={"user_id": memo_user, "device_id": device_id},
                json={},
                headers=auth,
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return (await resp.json())["one_time_key_counts"].get("signed_curve25519", 0)

    try:
        room = await alice.create_encrypted_room([memo_user], direct=True)
        await alice.wait_joined(room, memo_user)
        # her client claims one of the memo user's one-time keys for the Olm session that
        # carries her room key; Synapse reports the count with that to-device message
        await alice.send_text(room, "hello memo user")
        deadline = asyncio.get_running_loop().time() + 30
        while (count := await memo_key_count()) < target:
            assert asyncio.get_running_loop().time() < deadline, f"still {count} of {target}"
            await asyncio.sleep(0.2)
    finally:
        await alice.close()


async def test_a_conference_in_an_encrypted_room_signals_encrypted_both_ways(
    calls_stack, calls_bot, tmp_path
):
    """Two people whose clients encrypt call the conference user of their encrypted
    room: their invites go out encrypted and are read, the conference user's answer and
    candidates come back encrypted (its own device), and each hears the other."""
    from test_calls_conference import loudness

    people = []
    for _ in range(2):
        localpart = f"conf_{secrets.token_hex(3)}"
        people.append(await EncryptedPerson.register(calls_stack, localpart, tmp_path / localpart))
    alice, bob = people
    calls = []
    try:
        room = await alice.create_encrypted_room([calls_bot, bob.user_id], name="Decision")
        await alice.wait_joined(room, calls_bot)
        while room not in bob.invites:
            await bob.sync_once()
        await bob.client.join(room)
        await alice.wait_joined(room, bob.user_id)
        mark = alice.mark(room)
        await alice.send_text(room, "!call conference")
        ready = await alice.wait_for_text(room, calls_bot, "Conference ready", start=mark)
        assert ready.get("decrypted") is True
        conference_user = re.search(r"call (@\S+:localhost) to join", ready["content"]["body"])[1]
        await bob.wait_joined(room, conference_user)

        calls = [CallPeer(p, room, tone_hz=hz) for p, hz in zip(people, (440, 660), strict=True)]
        for call in calls:
            await call.place(invitee=conference_user)
        for person, call in zip(people, calls, strict=True):
            answer = await call.wait_for(lambda e: e["type"] == "m.call.answer")
            assert answer["sender"] == conference_user
            assert answer.get("decrypted") is True  # it came encrypted, and was read
            candidates = await call.wait_for(lambda e: e["type"] == "m.call.candidates")
            assert candidates["sender"] == conference_user
            assert candidates.get("decrypted") is True
            await call.wait_connected()
            # the person's own invite went out encrypted (their client decrypts it back)
            invite = next(
                e
                for e in person.timeline[room]
                if e.get("type") == "m.call.invite" and e["content"].get("call_id") == call.call_id
            )
            assert invite.get("decrypted") is True
        await calls[0].wait_for_room(
            lambda e: "joined the conference (2 connected)" in str(e.get("content", {}).get("body"))
        )
        heard = await asyncio.gather(*(call.hear(1.5) for call in calls))
        for own, other, samples in ((440, 660, heard[0]), (660, 440, heard[1])):
            assert loudness(samples, other) > 0.2, f"the {own} Hz caller does not hear {other} Hz"
            assert loudness(samples, own) < 0.01, f"the {own} Hz caller hears themselves"

        for call in calls:
            await call.hang_up()
        # nothing from the conference user went out in plain text or unreadable
        for person in people:
            await person.sync_once()
            assert not person.undecryptable.get(room)
            assert sent_in_plain_text(person, room, conference_user) == []
    finally:
        for call in calls:
            await call.close()
        for person in people:
            await person.close()
