"""The encryption tables (component ``crypto``): the bot's account, Olm and Megolm
sessions, other people's devices, and events waiting for their room key.

Every pickle is encrypted with the key from ``encryption.pickle_key`` (never stored here).
"""

from __future__ import annotations

from mautrix.util.async_db import Scheme

from anywhere.storage.migrations import Migrations, serial_primary_key


async def v1_crypto(conn, scheme: Scheme) -> None:
    """the bot's device keys, Olm/Megolm sessions, devices, events waiting for keys"""
    await conn.execute(
        """CREATE TABLE crypto_account (
            user_id   TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            pickle    TEXT NOT NULL,
            shared    BOOLEAN NOT NULL DEFAULT FALSE
        )"""
    )
    await conn.execute(
        """CREATE TABLE crypto_olm_session (
            sender_key TEXT NOT NULL,
            session_id TEXT NOT NULL,
            pickle     TEXT NOT NULL,
            last_used  BIGINT NOT NULL,
            PRIMARY KEY (sender_key, session_id)
        )"""
    )
    await conn.execute(
        """CREATE TABLE crypto_megolm_inbound (
            session_id  TEXT PRIMARY KEY,
            room_id     TEXT NOT NULL,
            sender_key  TEXT NOT NULL,
            signing_key TEXT NOT NULL,
            pickle      TEXT NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE crypto_megolm_outbound (
            room_id     TEXT PRIMARY KEY,
            session_id  TEXT NOT NULL,
            pickle      TEXT NOT NULL,
            created_at  BIGINT NOT NULL,
            messages    INTEGER NOT NULL,
            shared_with TEXT NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE crypto_device (
            user_id    TEXT NOT NULL,
            device_id  TEXT NOT NULL,
            curve25519 TEXT NOT NULL,
            ed25519    TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id)
        )"""
    )
    await conn.execute(
        "CREATE TABLE crypto_tracked_user (user_id TEXT PRIMARY KEY, outdated BOOLEAN NOT NULL)"
    )
    # (session_id, message_index) -> the event that used it: a replayed index is refused
    await conn.execute(
        """CREATE TABLE crypto_megolm_index (
            session_id    TEXT NOT NULL,
            message_index BIGINT NOT NULL,
            event_id      TEXT NOT NULL,
            PRIMARY KEY (session_id, message_index)
        )"""
    )
    seq = serial_primary_key(scheme)
    await conn.execute(
        f"""CREATE TABLE crypto_waiting (
            seq        {seq},
            room_id    TEXT NOT NULL,
            session_id TEXT,
            txn_id     TEXT NOT NULL,
            event      TEXT NOT NULL,
            waiting_since BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX crypto_waiting_room ON crypto_waiting (room_id, seq)")


async def v2_cross_signing(conn, scheme: Scheme) -> None:
    """the bot's cross-signing private keys, sealed with the pickle key"""
    await conn.execute(
        "CREATE TABLE crypto_cross_signing (user_id TEXT PRIMARY KEY, sealed TEXT NOT NULL)"
    )


async def v3_per_identity(conn, scheme: Scheme) -> None:
    """Olm sessions and outbound Megolm sessions belong to one of the bridge's identities
    (``owner``: its user id): the bot, and later the memo/conference users and ghosts, each
    with a device of its own (issue 16). Existing rows are the bot's (its account is the
    only one so far)."""
    owner = "COALESCE((SELECT MIN(user_id) FROM crypto_account), '')"
    await conn.execute(
        """CREATE TABLE crypto_olm_session_v3 (
            owner      TEXT NOT NULL,
            sender_key TEXT NOT NULL,
            session_id TEXT NOT NULL,
            pickle     TEXT NOT NULL,
            last_used  BIGINT NOT NULL,
            PRIMARY KEY (owner, sender_key, session_id)
        )"""
    )
    await conn.execute(
        "INSERT INTO crypto_olm_session_v3 (owner, sender_key, session_id, pickle, last_used) "
        f"SELECT {owner}, sender_key, session_id, pickle, last_used FROM crypto_olm_session"
    )
    await conn.execute("DROP TABLE crypto_olm_session")
    await conn.execute("ALTER TABLE crypto_olm_session_v3 RENAME TO crypto_olm_session")
    await conn.execute(
        """CREATE TABLE crypto_megolm_outbound_v3 (
            owner       TEXT NOT NULL,
            room_id     TEXT NOT NULL,
            session_id  TEXT NOT NULL,
            pickle      TEXT NOT NULL,
            created_at  BIGINT NOT NULL,
            messages    INTEGER NOT NULL,
            shared_with TEXT NOT NULL,
            PRIMARY KEY (owner, room_id)
        )"""
    )
    await conn.execute(
        "INSERT INTO crypto_megolm_outbound_v3 (owner, room_id, session_id, pickle, "
        f"created_at, messages, shared_with) SELECT {owner}, room_id, session_id, pickle, "
        "created_at, messages, shared_with FROM crypto_megolm_outbound"
    )
    await conn.execute("DROP TABLE crypto_megolm_outbound")
    await conn.execute("ALTER TABLE crypto_megolm_outbound_v3 RENAME TO crypto_megolm_outbound")


CRYPTO_MIGRATIONS = Migrations("crypto", [v1_crypto, v2_cross_signing, v3_per_identity])
