"""Room keys Synapse dropped while the bridge was down are recovered with key requests
(issue 16, "exactly once"). Synapse does not queue to-device data for an unreachable
appservice: its catch-up transactions carry the room events only. So a person whose
client starts a new Megolm session while the bridge is SIGKILLed sends the room key into
nothing; after the restart the message arrives, the bot keeps it, asks the sender's
devices for the key (``m.room_key_request``), the person's client forwards it as
Element's does, and the command is answered exactly once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import pytest

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.bridge.testing.fixtures import postgres_database_blocking
from anywhere.bridge.testing.stack import Stack

from .conftest import log_size, wait_for_log
from .test_e2e_encrypted_rooms import is_text_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def down_stack(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        extra = {"bridge": {"permissions": {"localhost": "user"}}}
        if request.param == "postgresql":
            extra["database"] = {"url": stack.enter_context(postgres_database_blocking())}
        yield stack.enter_context(
            Stack(tmp_path_factory.mktemp(f"keys-down-{request.param}"), ["basics"], None, extra)
        )


def pongs(person: EncryptedPerson, room: str, bot_id: str, word: str) -> int:
    return sum(
        1
        for event in person.timeline.get(room, [])
        if event.get("sender") == bot_id and f"pong {word}" in str(event.get("content"))
    )


async def test_a_room_key_dropped_while_the_bridge_was_down_is_requested_and_the_command_answered_once(  # noqa: E501
    down_stack, tmp_path
):
    stack = down_stack
    await wait_for_log(stack, "encrypted rooms ready")
    alice = await EncryptedPerson.register(
        stack, f"alice_{secrets.token_hex(3)}", tmp_path / "alice"
    )
    alice.answers_key_requests = True  # as Element does; matrix-nio alone would not
    try:
        room = await alice.create_encrypted_room([stack.bot_id], direct=True)
        await alice.wait_joined(room, stack.bot_id)
        mark = alice.mark(room)
        await alice.send_text(room, "!ping before")
        await alice.wait_for(room, is_text_from(stack.bot_id, "pong before"), start=mark)

        await asyncio.to_thread(stack.bridge.kill)
        alice.rotate_room_key(room)  # a new session: its key goes to the bot's device now
        lost = await alice.send_text(room, "!ping while down")
        await stack.homeserver_marks_bridge("down")  # what it had for the bridge failed

        logged = log_size(stack)
        await asyncio.to_thread(stack.bridge.start)
        await stack.homeserver_marks_bridge("up")
        # the key did not come with the message: it was dropped
        assert lost in await wait_for_log(
            stack, "waiting for the room key", after=logged, timeout=180
        )
        asked = await wait_for_log(stack, "asked the sender's devices", after=logged)
        assert alice.user_id in asked and stack.bot_id in asked
        await alice.wait_for(
            room, is_text_from(stack.bot_id, "pong while down"), start=mark, timeout=120
        )
        request = next(e for e in alice.to_device if e.get("type") == "m.room_key_request")
        assert request["sender"] == stack.bot_id
        assert [(u, s) for u, _device, s in alice.keys_forwarded] == [
            (stack.bot_id, alice.client.olm.outbound_group_sessions[room].id)
        ]

        # a marker after everything: a second answer would have come before its own
        marker = alice.mark(room)
        await alice.send_text(room, "!ping marker")
        await alice.wait_for(room, is_text_from(stack.bot_id, "pong marker"), start=marker)
        assert pongs(alice, room, stack.bot_id, "while down") == 1
        assert pongs(alice, room, stack.bot_id, "before") == 1
        assert alice.undecryptable.get(room, []) == []
        tail = stack.bridge.log_path.read_bytes()[logged:].decode()
        assert "gave up waiting for a room key" not in tail
        assert "could not read your message" not in str(alice.timeline[room])
    finally:
        await alice.close()


async def test_an_answer_lost_while_the_bridge_was_down_is_asked_for_again_after_the_restart(
    down_stack, tmp_path
):
    """The bot keeps a message and asks for its key; it is SIGKILLed before the answer
    comes, and the answer is dropped like any to-device message to a bridge that is down.
    After the restart the bot asks again (what it asked before is not remembered), the
    key comes, and the command is answered once."""
    stack = down_stack
    await wait_for_log(stack, "encrypted rooms ready")
    alice = await EncryptedPerson.register(stack, f"alice_{secrets.token_hex(3)}", tmp_path / "a")
    try:
        room = await alice.create_encrypted_room([stack.bot_id], direct=True)
        await alice.wait_joined(room, stack.bot_id)
        mark, logged = alice.mark(room), log_size(stack)
        kept, _never_sent = await alice.send_text_holding_key(room, "!ping kept")
        session = alice.client.olm.outbound_group_sessions[room].id
        await stack.bridge.wait_for_line("asked the sender's devices", session, after=logged)

        await asyncio.to_thread(stack.bridge.kill)
        alice.answers_key_requests = True  # the answer goes out while the bridge is down
        await alice.wait_for_to_device(lambda e: e.get("type") == "m.room_key_request")
        assert [s for _user, _device, s in alice.keys_forwarded] == [session]
        await stack.homeserver_marks_bridge("down")

        logged = log_size(stack)
        await asyncio.to_thread(stack.bridge.start)
        await stack.homeserver_marks_bridge("up")
        await stack.bridge.wait_for_line("asked the sender's devices", session, after=logged)
        await alice.wait_for(room, is_text_from(stack.bot_id, "pong kept"), start=mark, timeout=120)
        assert [s for _user, _device, s in alice.keys_forwarded] == [session, session]
        marker = alice.mark(room)
        await alice.send_text(room, "!ping marker")
        await alice.wait_for(room, is_text_from(stack.bot_id, "pong marker"), start=marker)
        assert pongs(alice, room, stack.bot_id, "kept") == 1
        assert "could not read your message" not in str(alice.timeline[room])
        assert kept not in alice.undecryptable.get(room, [])
    finally:
        await alice.close()
