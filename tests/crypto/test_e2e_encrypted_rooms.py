"""End to end in encrypted rooms: a real Synapse, the bridge as a process, people whose
clients encrypt (matrix-nio with vodozemac)."""

from __future__ import annotations

import pytest

from .conftest import log_size, wait_for_log

pytestmark = pytest.mark.e2e


async def test_an_encrypted_dm_created_like_element_x_gets_an_encrypted_answer(
    encrypted_person, bot_id
):
    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], direct=True)
    await alice.wait_joined(room, bot_id)
    mark = alice.mark(room)
    await alice.send_text(room, "!ping")
    answer = await alice.wait_for_text(room, bot_id, "pong", start=mark)
    assert answer["decrypted"] is True  # it came encrypted, and Alice's client read it


def is_text_from(sender: str, contains: str):
    return lambda e: (
        e.get("sender") == sender
        and e.get("type") == "m.room.message"
        and contains in str(e.get("content", {}).get("body", ""))
    )


async def test_a_private_encrypted_room_the_person_creates_then_invites_the_bot_into(
    encrypted_person, bot_id
):
    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([], name="Decision at 10 p.m.")
    mark = alice.mark(room)
    await alice.send_text(room, "before the bot came")  # a session the bot never gets
    await alice.client.room_invite(room, bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.send_text(room, "!ping room")
    answer = await alice.wait_for(room, is_text_from(bot_id, "pong room"), start=mark)
    assert answer["decrypted"] is True


async def test_a_message_whose_room_key_arrives_late_is_answered_when_it_does(
    encrypted_person, bot_id, anywhere_stack
):
    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], direct=True)
    await alice.wait_joined(room, bot_id)
    mark, logged = alice.mark(room), log_size(anywhere_stack)
    event_id, release_key = await alice.send_text_holding_key(room, "!ping late")
    line = await wait_for_log(anywhere_stack, "waiting for the room key", after=logged)
    assert event_id in line
    # the bot asks Alice's devices for the key (m.room_key_request)
    session_id = alice.client.olm.outbound_group_sessions[room].id
    request = await alice.wait_for_to_device(
        lambda e: (
            e.get("type") == "m.room_key_request"
            and e.get("sender") == bot_id
            and e["content"].get("body", {}).get("session_id") == session_id
        )
    )
    assert request["content"]["action"] == "request"
    await release_key()
    answer = await alice.wait_for(room, is_text_from(bot_id, "pong late"), start=mark)
    assert answer["decrypted"] is True


async def test_after_a_member_leaves_the_bots_next_message_uses_a_key_they_never_got(
    encrypted_person, bot_id
):
    alice, bob = await encrypted_person("alice"), await encrypted_person("bob")
    room = await alice.create_encrypted_room([bot_id, bob.user_id], name="Three of us")
    await alice.wait_joined(room, bot_id)
    await bob.client.join(room)
    await alice.wait_joined(room, bob.user_id)
    mark = alice.mark(room)
    await alice.send_text(room, "!ping one")
    first = await alice.wait_for(room, is_text_from(bot_id, "pong one"), start=mark)
    # Bob read the bot's first answer: he had its room key
    seen_by_bob = await bob.wait_for(room, is_text_from(bot_id, "pong one"))
    assert seen_by_bob["decrypted"] is True
    await bob.client.room_leave(room)
    await alice.wait_for(
        room,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == bob.user_id
            and e["content"].get("membership") == "leave"
        ),
    )
    mark = alice.mark(room)
    await alice.send_text(room, "!ping two")
    second = await alice.wait_for(room, is_text_from(bot_id, "pong two"), start=mark)
    assert second["decrypted"] is True
    assert second["session_id"] != first["session_id"]  # rotated when Bob left
    await bob.sync_once()
    bob_sessions = set(_inbound_session_ids(bob))
    assert first["session_id"] in bob_sessions
    assert second["session_id"] not in bob_sessions


def _inbound_session_ids(person) -> list[str]:
    """Every Megolm session id a person's client holds a key for."""
    store = person.client.olm.inbound_group_store
    return [session.id for session in store]


async def test_a_members_new_device_gets_the_bots_room_key(
    encrypted_person, bot_id, anywhere_stack, tmp_path
):
    """The homeserver tells the bridge that Alice's device list changed (MSC3202 device
    lists in a transaction); the bot's next message is readable on her new device."""
    from anywhere.bridge.testing.e2ee import EncryptedPerson

    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], name="Two devices")
    await alice.wait_joined(room, bot_id)
    mark = alice.mark(room)
    await alice.send_text(room, "!ping one")
    await alice.wait_for(room, is_text_from(bot_id, "pong one"), start=mark)

    phone = await EncryptedPerson.another_device(anywhere_stack, alice.user_id, tmp_path / "p")
    try:
        await alice.sync_once()  # her first device learns of the second
        mark, phone_mark = alice.mark(room), phone.mark(room)
        await alice.send_text(room, "!ping two")
        await alice.wait_for(room, is_text_from(bot_id, "pong two"), start=mark)
        answer = await phone.wait_for(room, is_text_from(bot_id, "pong two"), start=phone_mark)
        assert answer["decrypted"] is True
    finally:
        await phone.close()
