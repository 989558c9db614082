"""The crypto store on both databases: the account survives a reopen with its key, and
a wrong key is refused with what to do (no new identity made silently)."""

from __future__ import annotations

import pytest

from anywhere.bridge.crypto.homeserver import KeysAPI
from anywhere.bridge.crypto.machine import OlmMachine
from anywhere.bridge.crypto.schema import CRYPTO_MIGRATIONS
from anywhere.bridge.crypto.service import pickle_key
from anywhere.bridge.crypto.store import CryptoStore
from anywhere.bridge.errors import AnywhereError
from anywhere.storage import open_database, run_migrations


async def test_the_account_is_kept_pickled_and_a_wrong_key_is_refused(anywhere_database_url):
    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        keys = KeysAPI("http://unused", "token", "@bot:example.org", "DEV", lambda: None)
        first = OlmMachine("@bot:example.org", "DEV", CryptoStore(db, pickle_key("a")), keys)
        assert await first.load_or_create() is True
        again = OlmMachine("@bot:example.org", "OTHER", CryptoStore(db, pickle_key("a")), keys)
        assert await again.load_or_create() is False
        assert (again.device_id, again.ed25519) == ("DEV", first.ed25519)
        stored = await db.fetchval("SELECT pickle FROM crypto_account")
        assert first.ed25519 not in stored  # encrypted, not plain
        wrong = OlmMachine("@bot:example.org", "DEV", CryptoStore(db, pickle_key("b")), keys)
        with pytest.raises(AnywhereError, match="encryption.pickle_key"):
            await wrong.load_or_create()
    finally:
        await db.stop()


async def test_a_room_key_claiming_a_known_session_from_another_room_or_sender_is_refused(
    anywhere_database_url,
):
    """A member forwarding a made-up key under someone else's session id (an earlier first
    index, so it would otherwise win) must not replace the key the sender shared."""
    import vodozemac

    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        store = CryptoStore(db, pickle_key("a"))
        alice = vodozemac.GroupSession()
        at_zero = vodozemac.InboundGroupSession(alice.session_key)
        alice.encrypt(b"one")  # the key Alice shares starts at index 1
        shared = vodozemac.InboundGroupSession(alice.session_key)
        assert await store.save_inbound("!room:x", "ALICE_CURVE", "ALICE_ED", shared) is True
        # an exported key is not signed: anyone can claim a session id with index 0
        forged = vodozemac.InboundGroupSession.import_session(at_zero.export_at(0))
        assert forged.session_id == shared.session_id and forged.first_known_index == 0
        for room, sender in (("!other:x", "ALICE_CURVE"), ("!room:x", "MALLORY_CURVE")):
            assert await store.save_inbound(room, sender, "MALLORY_ED", forged) is False
        kept = await CryptoStore(db, pickle_key("a")).inbound(shared.session_id)
        assert kept is not None and kept[1:] == ("!room:x", "ALICE_CURVE", "ALICE_ED")
    finally:
        await db.stop()
