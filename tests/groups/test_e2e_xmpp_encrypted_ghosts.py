"""Ghosts in an encrypted group room (issue 16): an XMPP person's messages reach the
encrypted Matrix room encrypted by the ghost's own device, and the Matrix person's
client decrypts them. Real Prosody, real Synapse, the bridge as a process, a Matrix
person whose client encrypts (matrix-nio with vodozemac)."""

from __future__ import annotations

import pytest

from .test_e2e_xmpp_encrypted_files import encrypted_boss, encrypted_linked_group  # noqa: F401

pytestmark = pytest.mark.e2e


async def test_an_xmpp_persons_message_reaches_the_encrypted_room_encrypted_by_its_ghost(
    xmpp_stack,
    prosody,
    xmpp_person,
    encrypted_boss,  # noqa: F811
):
    carol = await xmpp_person("carol")
    room, room_id = await encrypted_linked_group(
        xmpp_stack, encrypted_boss, carol, "Carol E", prosody
    )
    mark = encrypted_boss.mark(room_id)
    carol.send(room, "hello encrypted room", "groupchat")
    event = await encrypted_boss.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.message" and e["content"].get("body") == "hello encrypted room"
        ),
        start=mark,
    )
    ghost = event["sender"]
    assert ghost.startswith("@anywhere_xmpp_") and ghost != xmpp_stack.bot_id
    assert event.get("decrypted") is True  # sent encrypted, and the boss's client read it
    assert not encrypted_boss.undecryptable.get(room_id)
