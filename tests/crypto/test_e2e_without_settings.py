"""A homeserver without the settings encrypted rooms need: the bot keeps the old
fallback (a notice and an unencrypted direct chat) and says which setting is missing.
Moved here from tests/test_e2e_core.py, whose homeserver now has the settings."""

from __future__ import annotations

import time

import pytest

from anywhere.bridge.testing.stack import Stack

pytestmark = pytest.mark.e2e


async def wait_for_log(stack: Stack, text: str, timeout: float = 90.0) -> None:
    await stack.bridge.wait_for_line(text, timeout=timeout)


@pytest.fixture(scope="module")
def stack_without_to_device(tmp_path_factory):
    with Stack(
        tmp_path_factory.mktemp("no-to-device"),
        ["basics"],
        bridge_extra={"bridge": {"permissions": {"localhost": "user"}}},
        synapse_extra={"experimental_features": {"msc2409_to_device_messages_enabled": False}},
    ) as stack:
        yield stack


async def test_without_to_device_events_the_bot_says_why_once_and_opens_a_dm(
    stack_without_to_device,
):
    stack = stack_without_to_device
    await wait_for_log(stack, "encrypted rooms are off")
    async with stack.people() as person:
        alice = await person()
        bot_id = stack.bot_id
        room = await alice.create_room([bot_id], encrypted=True, name="Secret")
        await alice.wait_joined(room, bot_id)
        notice = await alice.wait_for_notice(room, bot_id, "can't read encrypted messages")
        assert alice.user_id in notice["content"]["body"]
        why = await alice.wait_for_notice(room, bot_id, "Why:")
        assert "msc2409_to_device_messages_enabled" in why["content"]["body"]
        # the DM invitation arrives; join it and find the greeting there
        deadline = time.monotonic() + 30
        while not alice.invites and time.monotonic() < deadline:
            await alice.sync_once()
        assert alice.invites, "the bot did not invite the person to a direct chat"
        dm = alice.invites.pop()
        await alice.client.join(dm)
        await alice.wait_for_notice(dm, bot_id, "let's talk here")
        # an encrypted message (which the bot cannot read) gets no second notice
        mark = alice.mark(room)
        await alice.client.room_send(
            room,
            "m.room.encrypted",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "sender_key": "x",
                "session_id": "y",
                "device_id": "Z",
            },
            ignore_unverified_devices=True,
        )
        await alice.send_text(room, "!ping after")
        await alice.wait_for(
            room,
            lambda e: e.get("sender") == bot_id and "pong after" in str(e.get("content")),
            start=mark,
        )
        notices = [
            e
            for e in alice.timeline[room]
            if "can't read encrypted" in str(e.get("content", {}).get("body"))
        ]
        assert len(notices) == 1
