"""Each of the bridge's identities (the bot, the memo user, ...) keeps its own Olm
sessions and its own outbound Megolm session per room in the one crypto store (issue 16:
a device per identity), and a database from before keeps its rows as the bot's. Without
a homeserver (the keys API's claim is answered by Alice's account); SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import vodozemac

from anywhere.bridge.crypto.homeserver import KeysAPI
from anywhere.bridge.crypto.machine import OlmMachine, canonical_json
from anywhere.bridge.crypto.schema import CRYPTO_MIGRATIONS, v1_crypto, v2_cross_signing
from anywhere.bridge.crypto.service import pickle_key
from anywhere.bridge.crypto.store import CryptoStore
from anywhere.storage import open_database, run_migrations
from anywhere.storage.migrations import Migrations

ROOM, ALICE = "!room:example.org", "@alice:example.org"
BOT, MEMO = "@bot:example.org", "@memo:example.org"


class AliceClaims(KeysAPI):
    """Claims are answered with a fresh one-time key of Alice's device, signed by it."""

    def __init__(self, alice: vodozemac.Account) -> None:
        super().__init__("http://127.0.0.1:9", "unused", BOT, "BOTDEV", lambda: None)
        self.alice = alice

    async def claim(self, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
        self.alice.generate_one_time_keys(1)
        key_id, key = next(iter(self.alice.one_time_keys.items()))
        self.alice.mark_keys_as_published()
        signed = {"key": key.to_base64()}
        signature = self.alice.sign(canonical_json(signed).encode()).to_base64()
        signed["signatures"] = {ALICE: {"ed25519:ALICE": signature}}
        return {ALICE: {"ALICE": {f"signed_curve25519:{key_id}": signed}}}


async def test_each_identity_encrypts_to_a_device_with_its_own_olm_session(
    anywhere_database_url,
):
    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        alice = vodozemac.Account()
        keys = AliceClaims(alice)
        store = CryptoStore(db, pickle_key("a secret"))
        bot = OlmMachine(BOT, "BOTDEV", store, keys)
        memo = OlmMachine(MEMO, "MEMODEV", store, keys)
        await bot.load_or_create()
        await memo.load_or_create()
        device = ("ALICE", alice.curve25519_key.to_base64(), alice.ed25519_key.to_base64())
        alice_sessions: dict[str, vodozemac.Session] = {}
        # the bot, then the memo user, then the bot again: each send must use the sender's
        # own session with Alice's device (another identity's would not decrypt for her)
        for n, machine in enumerate((bot, memo, bot, memo)):
            content = await machine.olm_encrypt(ALICE, device, "m.room_key", {"n": n})
            assert content["sender_key"] == machine.curve25519
            part = content["ciphertext"][device[1]]
            message = vodozemac.AnyOlmMessage.from_parts(
                part["type"], base64.b64decode(part["body"] + "==")
            )
            session = alice_sessions.get(machine.user_id)
            if session is None:
                session, plaintext = alice.create_inbound_session(
                    vodozemac.Curve25519PublicKey.from_base64(content["sender_key"]),
                    message.to_pre_key(),
                )
                alice_sessions[machine.user_id] = session
            else:
                plaintext = session.decrypt(message)
            payload = json.loads(plaintext)
            assert (payload["sender"], payload["content"]) == (machine.user_id, {"n": n})
        assert len(await store.olm_sessions(BOT, device[1])) == 1
        assert len(await store.olm_sessions(MEMO, device[1])) == 1
    finally:
        await db.stop()


async def test_each_identity_has_its_own_outbound_session_per_room(anywhere_database_url):
    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        store = CryptoStore(db, pickle_key("a secret"))
        machine = OlmMachine(BOT, "BOTDEV", store, AliceClaims(vodozemac.Account()))
        await machine.load_or_create()
        ours, memos = machine.new_outbound(), machine.new_outbound()
        ours["shared_with"].add((ALICE, "ALICE"))
        await store.save_outbound(BOT, ROOM, ours)
        await store.save_outbound(MEMO, ROOM, memos)
        kept = await store.outbound(BOT, ROOM)
        assert kept["session"].session_id == ours["session"].session_id
        assert kept["shared_with"] == {(ALICE, "ALICE")}
        kept = await store.outbound(MEMO, ROOM)
        assert kept["session"].session_id == memos["session"].session_id
        assert kept["shared_with"] == set()
        await store.discard_outbound(ROOM)  # a member left: nobody's session goes on
        assert await store.outbound(BOT, ROOM) is None
        assert await store.outbound(MEMO, ROOM) is None
    finally:
        await db.stop()


async def test_an_older_database_keeps_its_sessions_as_the_bots(anywhere_database_url):
    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [Migrations("crypto", [v1_crypto, v2_cross_signing])])
        store = CryptoStore(db, pickle_key("a secret"))
        account = vodozemac.Account()
        await store.save_account(BOT, "BOTDEV", account, True)
        session = account.create_outbound_session(
            vodozemac.Account().curve25519_key, vodozemac.Account().curve25519_key
        )
        group = vodozemac.GroupSession()
        await db.execute(
            "INSERT INTO crypto_olm_session (sender_key, session_id, pickle, last_used) "
            "VALUES ($1, $2, $3, $4)",
            "ALICEKEY",
            session.session_id,
            session.pickle(store.key),
            1,
        )
        await db.execute(
            "INSERT INTO crypto_megolm_outbound (room_id, session_id, pickle, created_at, "
            "messages, shared_with) VALUES ($1, $2, $3, $4, $5, $6)",
            ROOM,
            group.session_id,
            group.pickle(store.key),
            1,
            2,
            "[]",
        )
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        sessions = await store.olm_sessions(BOT, "ALICEKEY")
        assert [s.session_id for s in sessions] == [session.session_id]
        assert await store.olm_sessions(MEMO, "ALICEKEY") == []
        kept = await store.outbound(BOT, ROOM)
        assert (kept["session"].session_id, kept["messages"]) == (group.session_id, 2)
    finally:
        await db.stop()
