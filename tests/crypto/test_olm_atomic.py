"""A crash between decrypting an Olm message and storing the room key it carries loses
nothing: the ratchet and the key are saved together, so the replayed to-device event
(the inbox handles a transaction again after a crash) decrypts again and the key is
stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest
import vodozemac

from bridge.crypto import Encryption
from storage import open_database, run_migrations


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


async def test_a_crash_while_storing_a_room_key_loses_neither_key_nor_ratchet(
    anywhere_database_url, monkeypatch
):
    db = await open_database(anywhere_database_url)
    try:
        encryption = Encryption(
            secret="a secret long enough",
            device_id="BOT",
            user_id="@bot:example.org",
            homeserver_url="http://127.0.0.1:9",  # never called
            as_token="unused",
            display_name="Bot",
            is_ours=lambda user_id: user_id == "@bot:example.org",
            http=lambda: None,
        )
        await run_migrations(db, [encryption.migrations])

        async def dispatch(event) -> None:
            pass

        await encryption.open(db, dispatch)
        machine, store = encryption.machine, encryption.machine.store
        machine.account.generate_one_time_keys(1)
        one_time_key = next(iter(machine.account.one_time_keys.values()))
        await store.save_account(machine.user_id, machine.device_id, machine.account, True)

        alice = vodozemac.Account()
        await store.replace_devices(
            "@alice:example.org",
            {"ALICE": (alice.curve25519_key.to_base64(), alice.ed25519_key.to_base64())},
        )
        room_key = vodozemac.GroupSession()
        payload = {
            "type": "m.room_key",
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": "!room:example.org",
                "session_id": room_key.session_id,
                "session_key": room_key.session_key.to_base64(),
            },
            "sender": "@alice:example.org",
            "sender_device": "ALICE",
            "keys": {"ed25519": alice.ed25519_key.to_base64()},
            "recipient": "@bot:example.org",
            "recipient_keys": {"ed25519": machine.ed25519},
        }
        session = alice.create_outbound_session(machine.account.curve25519_key, one_time_key)
        message_type, ciphertext = session.encrypt(json.dumps(payload).encode()).to_parts()
        event = {
            "type": "m.room.encrypted",
            "sender": "@alice:example.org",
            "content": {
                "algorithm": "m.olm.v1.curve25519-aes-sha2",
                "sender_key": alice.curve25519_key.to_base64(),
                "ciphertext": {
                    machine.curve25519: {"type": message_type, "body": _b64(ciphertext)}
                },
            },
        }

        save_inbound = store.save_inbound

        async def crash(*args, **kwargs):
            raise RuntimeError("the process dies here")

        monkeypatch.setattr(store, "save_inbound", crash)
        with pytest.raises(RuntimeError, match="dies here"):
            await encryption._to_device(event)
        assert await store.inbound(room_key.session_id) is None

        monkeypatch.setattr(store, "save_inbound", save_inbound)
        await encryption._to_device(event)  # the same event again, as after a restart
        stored = await store.inbound(room_key.session_id)
        assert stored is not None and stored[1] == "!room:example.org"
    finally:
        await db.stop()
