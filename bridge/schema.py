"""The runtime's own tables (component ``core``)."""

from __future__ import annotations

from mautrix.util.async_db import Scheme

from storage.migrations import Migrations, is_postgres


async def v1_inbox(conn, scheme: Scheme) -> None:
    """durable transaction inbox"""
    seq = "BIGSERIAL PRIMARY KEY" if is_postgres(scheme) else "INTEGER PRIMARY KEY AUTOINCREMENT"
    await conn.execute(
        """CREATE TABLE inbox_txn (
            txn_id      TEXT PRIMARY KEY,
            received_at BIGINT NOT NULL,
            event_count INTEGER NOT NULL
        )"""
    )
    await conn.execute(
        f"""CREATE TABLE inbox_event (
            seq       {seq},
            txn_id    TEXT NOT NULL,
            ephemeral BOOLEAN NOT NULL,
            body      TEXT NOT NULL
        )"""
    )
    await conn.execute(
        "CREATE TABLE inbox_cursor (id INTEGER PRIMARY KEY, handled_seq BIGINT NOT NULL)"
    )
    await conn.execute("INSERT INTO inbox_cursor (id, handled_seq) VALUES (1, 0)")


async def v2_rooms(conn, scheme: Scheme) -> None:
    """rooms the bot knows: direct chats it made, encryption notices it gave"""
    await conn.execute(
        """CREATE TABLE bot_room (
            room_id          TEXT PRIMARY KEY,
            is_direct        BOOLEAN NOT NULL DEFAULT FALSE,
            dm_user          TEXT,
            encrypted        BOOLEAN NOT NULL DEFAULT FALSE,
            encrypted_notice BOOLEAN NOT NULL DEFAULT FALSE
        )"""
    )


CORE_MIGRATIONS = Migrations("core", [v1_inbox, v2_rooms])
