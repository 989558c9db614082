"""The crypto store on both databases: the account survives a reopen with its key, and
a wrong key is refused with what to do (no new identity made silently)."""

from __future__ import annotations

import pytest

from bridge.crypto.homeserver import KeysAPI
from bridge.crypto.machine import OlmMachine
from bridge.crypto.schema import CRYPTO_MIGRATIONS
from bridge.crypto.service import pickle_key
from bridge.crypto.store import CryptoStore
from bridge.errors import AnywhereError
from storage import open_database, run_migrations


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
