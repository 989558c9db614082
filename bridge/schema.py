"""The runtime's own tables (component ``core``)."""

from __future__ import annotations

import json

from mautrix.util.async_db import Scheme

from anywhere.storage.migrations import Migrations, serial_primary_key


async def v1_inbox(conn, scheme: Scheme) -> None:
    """durable transaction inbox"""
    seq = serial_primary_key(scheme)
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


async def v3_inbox_bodies(conn, scheme: Scheme) -> None:
    """the inbox keeps one row per transaction (its raw body), not one per event"""
    seq = serial_primary_key(scheme)
    await conn.execute(
        f"""CREATE TABLE inbox (
            seq         {seq},
            txn_id      TEXT NOT NULL UNIQUE,
            received_at BIGINT NOT NULL,
            body        TEXT NOT NULL
        )"""
    )
    # Known transaction ids stay known (replays must still change nothing) ...
    await conn.execute(
        "INSERT INTO inbox (txn_id, received_at, body) "
        "SELECT txn_id, received_at, '' FROM inbox_txn ORDER BY received_at"
    )
    # ... and events stored but not yet handled become one transaction, in order.
    cursor = await conn.fetchval("SELECT handled_seq FROM inbox_cursor WHERE id = 1")
    rows = await conn.fetch(
        "SELECT ephemeral, body FROM inbox_event WHERE seq > $1 ORDER BY seq", cursor or 0
    )
    pending = [json.loads(r["body"]) for r in rows if not r["ephemeral"]]
    await conn.execute("DROP TABLE inbox_event")
    await conn.execute("DROP TABLE inbox_txn")
    await conn.execute("DROP TABLE inbox_cursor")
    await conn.execute(
        """CREATE TABLE inbox_cursor (
            id            INTEGER PRIMARY KEY,
            handled_seq   BIGINT NOT NULL,
            handled_index INTEGER NOT NULL
        )"""
    )
    next_seq = 1
    if pending:
        next_seq = await conn.fetchval(
            "INSERT INTO inbox (txn_id, received_at, body) VALUES ($1, $2, $3) RETURNING seq",
            "anywhere-migrated-v3",
            0,
            json.dumps({"events": pending}),
        )
    else:
        next_seq = (await conn.fetchval("SELECT MAX(seq) FROM inbox") or 0) + 1
    await conn.execute(
        "INSERT INTO inbox_cursor (id, handled_seq, handled_index) VALUES (1, $1, 0)", next_seq
    )


async def v4_jobs(conn, scheme: Scheme) -> None:
    """durable background jobs (bridge/jobs.py)"""
    await conn.execute(
        f"""CREATE TABLE job (
            id          {serial_primary_key(scheme)},
            kind        TEXT NOT NULL,
            key         TEXT NOT NULL UNIQUE,
            payload     TEXT NOT NULL,
            state       TEXT NOT NULL,
            attempts    INTEGER NOT NULL,
            not_before  BIGINT NOT NULL,
            created_at  BIGINT NOT NULL,
            last_error  TEXT
        )"""
    )
    await conn.execute("CREATE INDEX job_due ON job (state, not_before, id)")


async def v5_inbox_event_ids(conn, scheme: Scheme) -> None:
    """the inbox keeps each transaction's event ids, and an id the homeserver reuses"""
    # event_ids: the JSON list of the transaction's persistent event ids, which tells a
    # replay (the same list) from a homeserver reusing the id (see bridge/inbox.py);
    # NULL where it is not known (bodies cleared before this version).
    # superseded: 0 for the newest transaction under its id; an older one under the same
    # id gets its own seq here, so (txn_id, superseded) stays unique.
    if scheme == Scheme.POSTGRES:
        await conn.execute("ALTER TABLE inbox ADD COLUMN event_ids TEXT")
        await conn.execute("ALTER TABLE inbox ADD COLUMN superseded BIGINT NOT NULL DEFAULT 0")
        await conn.execute("ALTER TABLE inbox DROP CONSTRAINT inbox_txn_id_key")
        await conn.execute("ALTER TABLE inbox ADD UNIQUE (txn_id, superseded)")
    else:  # SQLite cannot drop a constraint: the table is made again, seq values kept
        last_seq = await conn.fetchval("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'")
        await conn.execute(
            f"""CREATE TABLE inbox_v5 (
                seq         {serial_primary_key(scheme)},
                txn_id      TEXT NOT NULL,
                superseded  BIGINT NOT NULL DEFAULT 0,
                received_at BIGINT NOT NULL,
                body        TEXT NOT NULL,
                event_ids   TEXT,
                UNIQUE (txn_id, superseded)
            )"""
        )
        await conn.execute(
            "INSERT INTO inbox_v5 (seq, txn_id, received_at, body) "
            "SELECT seq, txn_id, received_at, body FROM inbox ORDER BY seq"
        )
        await conn.execute("DROP TABLE inbox")
        await conn.execute("ALTER TABLE inbox_v5 RENAME TO inbox")
        if last_seq:  # seq values are never used again
            await conn.execute(
                "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'inbox' AND seq < $1", last_seq
            )
    rows = await conn.fetch("SELECT seq, body FROM inbox WHERE body <> ''")
    for row in rows:  # stored, not yet handled: the list is in the body
        body = json.loads(row["body"])
        events = body.get("events") if isinstance(body, dict) else None
        ids = [e.get("event_id") for e in events or () if isinstance(e, dict)]
        await conn.execute(
            "UPDATE inbox SET event_ids = $1 WHERE seq = $2",
            json.dumps([i for i in ids if isinstance(i, str)]),
            row["seq"],
        )


CORE_MIGRATIONS = Migrations(
    "core", [v1_inbox, v2_rooms, v3_inbox_bodies, v4_jobs, v5_inbox_event_ids]
)
