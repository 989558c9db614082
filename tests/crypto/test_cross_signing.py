"""The bot's cross-signing keys: sealed in the database with the pickle key (SQLite and
PostgreSQL), the same keys after a restart, and signatures other clients accept."""

from __future__ import annotations

import pytest

from anywhere.bridge.crypto.cross_signing import (
    CrossSigningSecrets,
    SealedWithAnotherKey,
    public_key,
    sign_json,
)
from anywhere.bridge.crypto.machine import b64, verify_signed
from anywhere.bridge.crypto.schema import CRYPTO_MIGRATIONS
from anywhere.storage import open_database, run_migrations

pytestmark = pytest.mark.asyncio(loop_scope="function")
USER = "@anywhere:localhost"


async def test_the_keys_are_sealed_with_the_pickle_key_and_the_same_after_a_restart(
    anywhere_database_url,
):
    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        first = await CrossSigningSecrets(db, b"k" * 32, USER).load_or_create()
        again = await CrossSigningSecrets(db, b"k" * 32, USER).load_or_create()
        assert {u: public_key(k) for u, k in first.items()} == {
            u: public_key(k) for u, k in again.items()
        }
        stored = await db.fetchval("SELECT sealed FROM crypto_cross_signing")
        for key in first.values():  # no private key in plain (raw or base64)
            assert b64(key.private_bytes_raw()) not in stored
            assert key.private_bytes_raw() not in stored.encode()
        with pytest.raises(SealedWithAnotherKey, match="encryption.pickle_key"):
            await CrossSigningSecrets(db, b"x" * 32, USER).load_or_create()
    finally:
        await db.stop()


async def test_a_signature_verifies_with_the_public_key_as_matrix_clients_check_it(tmp_path):
    db = await open_database(f"sqlite:{tmp_path / 'anywhere.db'}")
    try:
        await run_migrations(db, [CRYPTO_MIGRATIONS])
        keys = await CrossSigningSecrets(db, b"k" * 32, USER).load_or_create()
    finally:
        await db.stop()
    device = {"user_id": USER, "device_id": "BOT", "keys": {"ed25519:BOT": "abc"}}
    signed = sign_json(device, USER, keys["self_signing"])
    ssk = public_key(keys["self_signing"])
    assert verify_signed(signed, USER, ssk, ssk)
    signed["device_id"] = "OTHER"
    assert not verify_signed(signed, USER, ssk, ssk)
