"""End to end in encrypted rooms: a real Synapse, the bridge as a process, people whose
clients encrypt (matrix-nio with vodozemac)."""

from __future__ import annotations

import pytest

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
