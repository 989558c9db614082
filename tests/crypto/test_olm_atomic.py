"""Room keys over Olm, without a homeserver (the homeserver's part is tested end to end):
a crash between decrypting an Olm message and storing the room key it carries loses
nothing — the ratchet and the key are saved together, so the replayed to-device event
(the inbox handles a transaction again after a crash) decrypts again; and a forwarded
room key is taken only when the bot asked that person for it. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest
import vodozemac

from anywhere.bridge.crypto import Encryption
from anywhere.storage import open_database, run_migrations

ROOM, ALICE, BOT = "!room:example.org", "@alice:example.org", "@bot:example.org"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


class Setup:
    """The bot's encryption on a database, and Alice's device (known to the bot)."""

    def __init__(self, encryption: Encryption) -> None:
        self.encryption = encryption
        self.machine = encryption.machine
        self.store = encryption.machine.store
        self.alice = vodozemac.Account()
        self.session: vodozemac.Session | None = None

    @classmethod
    async def make(cls, db) -> Setup:
        encryption = Encryption(
            secret="a secret long enough",
            device_id="BOT",
            user_id=BOT,
            homeserver_url="http://127.0.0.1:9",  # never called
            as_token="unused",
            display_name="Bot",
            is_ours=lambda user_id: user_id == BOT,
            http=lambda: None,
        )
        await run_migrations(db, [encryption.migrations])

        async def dispatch(event) -> None:
            pass

        await encryption.open(db, dispatch)
        setup = cls(encryption)
        machine = setup.machine
        machine.account.generate_one_time_keys(1)
        one_time_key = next(iter(machine.account.one_time_keys.values()))
        await setup.store.save_account(BOT, "BOT", machine.account, True)
        await setup.store.replace_devices(
            ALICE,
            {
                "ALICE": (
                    setup.alice.curve25519_key.to_base64(),
                    setup.alice.ed25519_key.to_base64(),
                )
            },
        )
        setup.session = setup.alice.create_outbound_session(
            machine.account.curve25519_key, one_time_key
        )
        return setup

    def olm_event(self, event_type: str, content: dict) -> dict:
        """A to-device event from Alice's device, Olm-encrypted for the bot's."""
        payload = {
            "type": event_type,
            "content": content,
            "sender": ALICE,
            "sender_device": "ALICE",
            "keys": {"ed25519": self.alice.ed25519_key.to_base64()},
            "recipient": BOT,
            "recipient_keys": {"ed25519": self.machine.ed25519},
        }
        message_type, ciphertext = self.session.encrypt(json.dumps(payload).encode()).to_parts()
        return {
            "type": "m.room.encrypted",
            "sender": ALICE,
            "content": {
                "algorithm": "m.olm.v1.curve25519-aes-sha2",
                "sender_key": self.alice.curve25519_key.to_base64(),
                "ciphertext": {
                    self.machine.curve25519: {"type": message_type, "body": _b64(ciphertext)}
                },
            },
        }


def room_key(group: vodozemac.GroupSession) -> dict:
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": ROOM,
        "session_id": group.session_id,
        "session_key": group.session_key.to_base64(),
    }


async def test_a_crash_while_storing_a_room_key_loses_neither_key_nor_ratchet(
    anywhere_database_url, monkeypatch
):
    db = await open_database(anywhere_database_url)
    try:
        setup = await Setup.make(db)
        group = vodozemac.GroupSession()
        event = setup.olm_event("m.room_key", room_key(group))
        save_inbound = setup.store.save_inbound

        async def crash(*args, **kwargs):
            raise RuntimeError("the process dies here")

        monkeypatch.setattr(setup.store, "save_inbound", crash)
        with pytest.raises(RuntimeError, match="dies here"):
            await setup.encryption._to_device(event)
        assert await setup.store.inbound(group.session_id) is None

        monkeypatch.setattr(setup.store, "save_inbound", save_inbound)
        await setup.encryption._to_device(event)  # the same event again, as after a restart
        stored = await setup.store.inbound(group.session_id)
        assert stored is not None and stored[1] == ROOM
    finally:
        await db.stop()


async def test_a_forwarded_room_key_is_taken_only_when_the_bot_asked_that_person(
    anywhere_database_url,
):
    db = await open_database(anywhere_database_url)
    try:
        setup = await Setup.make(db)
        group = vodozemac.GroupSession()
        forwarded = room_key(group) | {
            "session_key": group.session_key.to_base64(),
            "sender_key": setup.alice.curve25519_key.to_base64(),
            "sender_claimed_ed25519_key": setup.alice.ed25519_key.to_base64(),
            "forwarding_curve25519_key_chain": [],
        }
        # an ExportedSessionKey, as a forwarded key carries
        inbound = vodozemac.InboundGroupSession(vodozemac.SessionKey(group.session_key.to_base64()))
        forwarded["session_key"] = inbound.export_at(0).to_base64()

        await setup.encryption._to_device(setup.olm_event("m.forwarded_room_key", forwarded))
        assert await setup.store.inbound(group.session_id) is None  # unsolicited: refused

        setup.encryption._requested[group.session_id] = (ROOM, "@mallory:example.org", BOT)
        await setup.encryption._to_device(setup.olm_event("m.forwarded_room_key", forwarded))
        assert await setup.store.inbound(group.session_id) is None  # asked someone else

        # asked by another identity of the bridge: only its device takes the answer
        setup.encryption._requested[group.session_id] = (ROOM, ALICE, "@memo:example.org")
        await setup.encryption._to_device(setup.olm_event("m.forwarded_room_key", forwarded))
        assert await setup.store.inbound(group.session_id) is None

        setup.encryption._requested[group.session_id] = (ROOM, ALICE, BOT)
        await setup.encryption._to_device(setup.olm_event("m.forwarded_room_key", forwarded))
        assert await setup.store.inbound(group.session_id) is not None
    finally:
        await db.stop()
