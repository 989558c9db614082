"""A room key that never arrives does not block a room for ever: after
``encryption.key_wait_seconds`` the bot tells the sender it could not read their message
and goes on with the room's later events, in order."""

from __future__ import annotations

import secrets

import pytest

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.bridge.testing.stack import Stack

from .conftest import log_size, wait_for_log
from .test_e2e_encrypted_rooms import is_text_from

pytestmark = pytest.mark.e2e

WAIT = 8


@pytest.fixture(scope="module")
def impatient_stack(tmp_path_factory):
    with Stack(
        tmp_path_factory.mktemp("lost-key"),
        ["basics"],
        bridge_extra={
            "bridge": {"permissions": {"localhost": "user"}},
            "encryption": {"key_wait_seconds": WAIT},
        },
    ) as stack:
        yield stack


async def test_a_key_that_never_comes_is_given_up_the_sender_told_and_the_room_goes_on(
    impatient_stack, tmp_path
):
    stack = impatient_stack
    await wait_for_log(stack, "encrypted rooms ready")
    people = []
    try:
        for name in ("alice", "bob"):
            localpart = f"{name}_{secrets.token_hex(3)}"
            people.append(await EncryptedPerson.register(stack, localpart, tmp_path / name))
        alice, bob = people
        room = await alice.create_encrypted_room([stack.bot_id, bob.user_id], name="Lost")
        await alice.wait_joined(room, stack.bot_id)
        await bob.client.join(room)
        await alice.wait_joined(room, bob.user_id)
        mark, logged = alice.mark(room), log_size(stack)
        lost, _never_sent = await alice.send_text_holding_key(room, "!ping lost")
        assert lost in await wait_for_log(stack, "waiting for the room key", after=logged)
        await bob.sync_once()
        await bob.send_text(room, "!ping bob")  # readable, but behind Alice's message
        notice = await alice.wait_for(
            room, is_text_from(stack.bot_id, "I could not read your message"), start=mark
        )
        assert notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == lost
        pong = await alice.wait_for(room, is_text_from(stack.bot_id, "pong bob"), start=mark)
        timeline = alice.timeline[room]
        assert timeline.index(notice) < timeline.index(pong)
        line = await wait_for_log(stack, "gave up waiting for a room key", after=logged)
        assert lost in line
        assert not any("pong lost" in str(e.get("content")) for e in timeline)
    finally:
        for person in people:
            await person.close()
