"""The database layer on SQLite and on PostgreSQL (the same tests on both)."""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncpg
import pytest
import pytest_asyncio

from bridge.errors import SchemaTooNewError
from bridge.inbox import Inbox
from bridge.schema import CORE_MIGRATIONS
from storage import Migrations, open_database, run_migrations

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest_asyncio.fixture(params=["sqlite", "postgres"], loop_scope="function")
async def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'anywhere.db'}"
        return
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL reachable at 127.0.0.1:5432 ({exc})")
    name = f"anywhere_test_{secrets.token_hex(4)}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def _create_note(conn, scheme):
    """notes table"""
    await conn.execute("CREATE TABLE note (id TEXT PRIMARY KEY, body TEXT NOT NULL)")


async def _add_author(conn, scheme):
    """notes get an author"""
    await conn.execute("ALTER TABLE note ADD COLUMN author TEXT")


@pytest.mark.asyncio(loop_scope="function")
async def test_migrations_run_once_in_order_per_component(database_url):
    db = await open_database(database_url)
    try:
        versions = await run_migrations(db, [CORE_MIGRATIONS, Migrations("notes", [_create_note])])
        assert versions == {"core": 2, "notes": 1}
        await db.execute("INSERT INTO note (id, body) VALUES ($1, $2)", "a", "kept")
        versions = await run_migrations(
            db, [CORE_MIGRATIONS, Migrations("notes", [_create_note, _add_author])]
        )
        assert versions["notes"] == 2
        row = await db.fetchrow("SELECT body, author FROM note WHERE id = $1", "a")
        assert (row["body"], row["author"]) == ("kept", None)
        assert await db.fetchval("SELECT version FROM notes_version") == 2
    finally:
        await db.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_schema_newer_than_the_code_is_refused(database_url):
    db = await open_database(database_url)
    try:
        await run_migrations(db, [Migrations("notes", [_create_note, _add_author])])
        with pytest.raises(SchemaTooNewError, match="'notes' is newer than this code"):
            await run_migrations(db, [Migrations("notes", [_create_note])])
    finally:
        await db.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_inbox_stores_a_transaction_once_and_hands_events_over_in_order(database_url):
    db = await open_database(database_url)
    seen: list[str] = []

    async def dispatch(event):
        seen.append(event.event_id)

    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, dispatch)
        events = [{"event_id": f"$e{i}", "type": "m.room.message", "content": {}} for i in range(5)]
        assert await inbox.store("t1", events[:3], []) is True
        assert await inbox.store("t1", events[:3], []) is False  # replay
        assert await inbox.store("t2", events[3:], [{"type": "m.typing"}]) is True
        assert await inbox.pending_count() == 6
        inbox.start()
        for _ in range(100):
            if await inbox.pending_count() == 0:
                break
            await asyncio.sleep(0.02)
        await inbox.stop()
        assert seen == ["$e0", "$e1", "$e2", "$e3", "$e4", ""]
        # a replay after everything was handled (and pruned) still changes nothing
        assert await inbox.store("t1", events[:3], []) is False
        assert await inbox.pending_count() == 0
    finally:
        await db.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_events_acknowledged_but_not_handled_survive_a_restart(database_url):
    db = await open_database(database_url)
    await run_migrations(db, [CORE_MIGRATIONS])
    inbox = Inbox(db, lambda e: None)
    await inbox.store("t9", [{"event_id": "$late", "type": "m.room.message"}], [])
    await db.stop()  # the process dies before the worker ran

    db = await open_database(database_url)
    handled = []

    async def dispatch(event):
        handled.append((event.txn_id, event.event_id, json.dumps(event.raw)))

    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, dispatch)
        inbox.start()
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.02)
        await inbox.stop()
        assert [h[:2] for h in handled] == [("t9", "$late")]
    finally:
        await db.stop()
