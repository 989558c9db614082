"""Replay protection across a crash, on both databases: the message indexes that
decrypted events used are written before the inbox saves a position past those events
(after a crash they are not handled again, so nothing else would claim them), and a
replay of one of them under another event id is then refused by a fresh process."""

from __future__ import annotations

import asyncio
import json

import pytest
import vodozemac

from anywhere.bridge.crypto.machine import MEGOLM, DecryptionError
from anywhere.bridge.crypto.service import Encryption
from anywhere.bridge.inbox import Inbox
from anywhere.bridge.schema import CORE_MIGRATIONS
from anywhere.storage import open_database, run_migrations

ROOM = "!room:example.org"
PERSON = "@person:example.org"


def encryption() -> Encryption:
    return Encryption(
        secret="a secret",
        device_id="BOTDEV",
        user_id="@bot:example.org",
        homeserver_url="http://unused",
        as_token="token",
        display_name="bot",
        is_ours=lambda user_id: user_id == "@bot:example.org",
        http=lambda: None,
    )


def encrypted_event(outbound: vodozemac.GroupSession, sender_key: str, n: int) -> dict:
    plaintext = {"type": "m.room.message", "content": {"body": f"m{n}"}, "room_id": ROOM}
    return {
        "type": "m.room.encrypted",
        "room_id": ROOM,
        "sender": PERSON,
        "event_id": f"$event{n}",
        "content": {
            "algorithm": MEGOLM,
            "sender_key": sender_key,
            "session_id": outbound.session_id,
            "ciphertext": outbound.encrypt(json.dumps(plaintext).encode()).to_base64(),
        },
    }


async def saved_position(db) -> int:
    return await db.fetchval("SELECT handled_seq FROM inbox_cursor WHERE id = 1") or 0


@pytest.mark.asyncio(loop_scope="function")
async def test_claims_are_durable_before_the_position_passes_their_events(anywhere_database_url):
    db = await open_database(anywhere_database_url)
    try:
        enc = encryption()
        await run_migrations(db, [CORE_MIGRATIONS, enc.migrations])
        seen: list[str] = []

        async def dispatch(event):
            seen.append(event.content.get("body", event.type))

        await enc.open(db, dispatch)
        person, outbound = vodozemac.Account(), vodozemac.GroupSession()
        sender_key = person.curve25519_key.to_base64()
        await enc.machine.add_room_key(
            {
                "type": "m.room_key",
                "sender_key": sender_key,
                "keys": {"ed25519": person.ed25519_key.to_base64()},
                "content": {
                    "algorithm": MEGOLM,
                    "room_id": ROOM,
                    "session_id": outbound.session_id,
                    "session_key": outbound.session_key.to_base64(),
                },
            }
        )
        events = [encrypted_event(outbound, sender_key, n) for n in range(3)]
        inbox = Inbox(
            db,
            enc.wrap(dispatch),
            before_events=enc.handle_transaction,
            before_save=enc.before_position_saved,
        )
        body = {"events": events}
        assert await inbox.store("t1", json.dumps(body), body)
        seq = await db.fetchval("SELECT seq FROM inbox WHERE txn_id = 't1'")
        inbox.start()
        try:
            for _ in range(250):  # the position past the transaction is saved
                if await saved_position(db) > seq:
                    break
                await asyncio.sleep(0.02)
            assert seen == ["m0", "m1", "m2"]
            assert await saved_position(db) > seq
            # what a crash right now would leave: the claims are there already
            claims = await db.fetch(
                "SELECT message_index, event_id FROM crypto_megolm_index ORDER BY message_index"
            )
            assert [(r["message_index"], r["event_id"]) for r in claims] == [
                (0, "$event0"),
                (1, "$event1"),
                (2, "$event2"),
            ]
        finally:
            await inbox.stop()

        # a fresh process: the same ciphertext under another event id is a replay
        fresh = encryption()
        await fresh.open(db, dispatch)
        replay = dict(events[1], event_id="$replayed")
        with pytest.raises(DecryptionError, match="replayed"):
            await fresh.machine.decrypt_megolm(replay)
        assert (await fresh.machine.decrypt_megolm(events[1]))["content"] == {"body": "m1"}
    finally:
        await db.stop()
