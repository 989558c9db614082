"""A missing room key in a room where another identity of the bridge sits, not the bot
(here the memo user's encrypted direct chat): the key request and the "could not read"
notice go out as that identity, from its own device — the device the key was meant for —
and a key forwarded to that device in answer is taken."""

from __future__ import annotations

import secrets

import pytest

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.bridge.testing.stack import Stack

from .conftest import log_size, wait_for_log
from .test_e2e_encrypted_rooms import is_text_from
from .test_e2e_lost_key import WAIT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def memo_stack(tmp_path_factory):
    with Stack(
        tmp_path_factory.mktemp("identity-keys"),
        ["basics", "calls"],
        settings={"calls": {"ice_addresses": ["127.0.0.1"]}},
        bridge_extra={
            "bridge": {"permissions": {"localhost": "user"}},
            "encryption": {"key_wait_seconds": WAIT},
        },
    ) as stack:
        yield stack


def is_key_request_from(user_id: str, session_id: str):
    return lambda e: (
        e.get("type") == "m.room_key_request"
        and e.get("sender") == user_id
        and e["content"].get("body", {}).get("session_id") == session_id
    )


async def test_in_the_memo_users_encrypted_dm_it_asks_for_the_key_and_tells_the_sender(
    memo_stack, tmp_path
):
    stack = memo_stack
    memo_user = f"@{stack.config['appservice']['ghost_prefix']}calls_memo:localhost"
    await wait_for_log(stack, "encrypted rooms ready")
    alice = await EncryptedPerson.register(
        stack, f"alice_{secrets.token_hex(3)}", tmp_path / "alice"
    )
    try:
        room = await alice.create_encrypted_room([memo_user], direct=True)
        await alice.wait_joined(room, memo_user)
        mark, logged = alice.mark(room), log_size(stack)

        # a key that never comes: asked for by the memo user's device, then the notice
        lost, _never_sent = await alice.send_text_holding_key(room, "a lost hello")
        session = alice.client.olm.outbound_group_sessions[room].id
        request = await alice.wait_for_to_device(is_key_request_from(memo_user, session))
        memo_device = request["content"]["requesting_device_id"]
        assert memo_device.startswith("AW")  # the memo user's own device, not the bot's
        notice = await alice.wait_for(
            room, is_text_from(memo_user, "I could not read your message"), start=mark
        )
        assert notice.get("decrypted") is True
        assert notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == lost
        assert not any(e.get("sender") == stack.bot_id for e in alice.timeline[room])
        assert lost in await wait_for_log(stack, "gave up waiting for a room key", after=logged)

        # a key forwarded in answer to the memo user's request reaches its device, is taken
        alice.answers_key_requests = True
        alice.rotate_room_key(room)
        logged = log_size(stack)
        _late, _never_sent = await alice.send_text_holding_key(room, "a second hello")
        session = alice.client.olm.outbound_group_sessions[room].id
        await alice.wait_for_to_device(is_key_request_from(memo_user, session))
        received = await stack.bridge.wait_for_line("room key received", session, after=logged)
        assert memo_user not in received  # from Alice, forwarded to the memo user's device
        assert (memo_user, memo_device, session) in alice.keys_forwarded
        tail = stack.bridge.log_path.read_bytes()[logged:].decode()
        assert "room key refused" not in tail and "gave up waiting" not in tail
    finally:
        await alice.close()
