"""Encrypted rooms with the bridge on PostgreSQL: an encrypted direct chat answered, a
late room key, and a restart that keeps the device and every key."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.bridge.testing.fixtures import postgres_database_blocking
from anywhere.bridge.testing.stack import Stack

from .conftest import log_size, wait_for_log
from .test_e2e_encrypted_rooms import is_text_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def postgres_stack(tmp_path_factory):
    with (
        postgres_database_blocking() as url,
        Stack(
            tmp_path_factory.mktemp("crypto-pg"),
            ["basics"],
            bridge_extra={
                "bridge": {"permissions": {"localhost": "user"}},
                "database": {"url": url},
            },
        ) as stack,
    ):
        yield stack


async def test_on_postgresql_a_late_key_and_a_restart_lose_nothing(postgres_stack, tmp_path):
    stack = postgres_stack
    await wait_for_log(stack, "encrypted rooms ready")
    assert "postgres" in stack.config["database"]["url"]
    alice = await EncryptedPerson.register(
        stack, f"alice_{secrets.token_hex(3)}", tmp_path / "alice"
    )
    try:
        room = await alice.create_encrypted_room([stack.bot_id], direct=True)
        await alice.wait_joined(room, stack.bot_id)
        mark, logged = alice.mark(room), log_size(stack)
        event_id, release_key = await alice.send_text_holding_key(room, "!ping late")
        assert event_id in await wait_for_log(stack, "waiting for the room key", after=logged)
        await release_key()
        answer = await alice.wait_for(room, is_text_from(stack.bot_id, "pong late"), start=mark)
        assert answer["decrypted"] is True

        logged = log_size(stack)
        await asyncio.to_thread(stack.bridge.stop)
        await asyncio.to_thread(stack.bridge.start)
        await wait_for_log(stack, "encryption account loaded", after=logged)
        mark = alice.mark(room)
        await alice.send_text(room, "!ping after restart")
        answer = await alice.wait_for(
            room, is_text_from(stack.bot_id, "pong after restart"), start=mark
        )
        assert answer["decrypted"] is True
        assert alice.undecryptable.get(room, []) == []
        assert (
            "waiting for the room key" not in stack.bridge.log_path.read_bytes()[logged:].decode()
        )
    finally:
        await alice.close()
