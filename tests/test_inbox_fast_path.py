"""The inbox's acknowledgement path: its own SQLite connection, falling back to the pool
when the write lock is taken; WAL checkpoints that keep the log from growing; handling
that gives way to a transaction being received; JSON the json module accepts and orjson
does not."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import pytest_asyncio

from anywhere.bridge import inbox as inbox_module
from anywhere.bridge.inbox import Inbox, parse_json
from anywhere.bridge.schema import CORE_MIGRATIONS
from anywhere.storage import open_database, run_migrations


def txn(*events):
    body = {"events": list(events)}
    return json.dumps(body), body


def message(n: int, size: int = 0) -> dict:
    return {"event_id": f"$e{n}", "type": "m.room.message", "content": {"body": "x" * size}}


async def handled_everything(inbox: Inbox, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await inbox.pending_count() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker did not handle everything")


@pytest_asyncio.fixture(loop_scope="function")
async def sqlite_db(tmp_path):
    db = await open_database(f"sqlite:{tmp_path / 'anywhere.db'}")
    await run_migrations(db, [CORE_MIGRATIONS])
    yield db
    await db.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_taken_write_lock_sends_the_insert_through_the_pool(sqlite_db):
    seen: list[str] = []

    async def dispatch(event):
        seen.append(event.event_id)

    inbox = Inbox(sqlite_db, dispatch)
    assert inbox._writer is not None  # the fast path is on for a SQLite file
    inbox.start()
    try:
        assert await inbox.store("t1", *txn(message(1)))
        # Another connection holds SQLite's write lock while the next transaction arrives.
        locked, release = asyncio.Event(), asyncio.Event()

        async def hold_the_write_lock():
            async with sqlite_db.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE inbox_cursor SET handled_index = handled_index")
                locked.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_write_lock())
        await locked.wait()
        store = asyncio.create_task(inbox.store("t2", *txn(message(2))))
        await asyncio.sleep(0.1)
        assert not store.done()  # waiting for the lock in the pool, not blocking the loop
        release.set()
        await holder
        assert await store is True  # stored once the lock was released
        assert await inbox.store("t2", *txn(message(2))) is False  # and known as stored
        await handled_everything(inbox)
    finally:
        await inbox.stop()
    assert seen == ["$e1", "$e2"]
    assert await sqlite_db.fetchval("SELECT COUNT(*) FROM inbox") == 2


@pytest.mark.asyncio(loop_scope="function")
async def test_checkpoints_start_the_log_over_so_it_does_not_grow(sqlite_db, monkeypatch):
    monkeypatch.setattr(inbox_module, "CHECKPOINT_INTERVAL", 0.05)
    inbox = Inbox(sqlite_db, lambda event: asyncio.sleep(0))
    inbox.start()
    wal = sqlite_db._path + "-wal"
    try:
        sizes = []
        for batch in range(3):
            for n in range(20):  # 20 transactions of ~100 kB: ~2 MB of log per batch
                await inbox.store(f"b{batch}-{n}", *txn(message(n, size=100_000)))
            sizes.append(os.path.getsize(wal))
            await asyncio.sleep(0.3)  # a checkpoint runs while nothing is stored
    finally:
        await inbox.stop()
    assert sizes[0] > 2_000_000
    # each batch starts the log over instead of appending to it
    assert sizes[2] < sizes[0] * 1.5, sizes


@pytest_asyncio.fixture(loop_scope="function")
async def recording_inbox(anywhere_database_url):
    """A started inbox on SQLite or PostgreSQL, and the event ids it handed over."""
    db = await open_database(anywhere_database_url)
    seen: list[str] = []

    async def dispatch(event):
        seen.append(event.event_id)

    await run_migrations(db, [CORE_MIGRATIONS])
    inbox = Inbox(db, dispatch)
    inbox.start()
    yield inbox, seen
    await inbox.stop()
    await db.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_handling_waits_while_a_transaction_is_being_received(recording_inbox, monkeypatch):
    monkeypatch.setattr(inbox_module, "GIVE_WAY_SECONDS", 5.0)
    inbox, seen = recording_inbox
    with inbox.receiving():
        await inbox.store("t1", *txn(*[message(n) for n in range(40)]))
        await asyncio.sleep(0.05)
        # the worker handed over at most one stretch before giving way
        assert len(seen) <= inbox_module.YIELD_EVERY
    await handled_everything(inbox)
    assert seen == [f"$e{n}" for n in range(40)]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_stalled_receiver_does_not_stop_handling(recording_inbox, monkeypatch):
    monkeypatch.setattr(inbox_module, "GIVE_WAY_SECONDS", 0.01)
    inbox, seen = recording_inbox
    await inbox.store("t1", *txn(*[message(n) for n in range(40)]))
    with inbox.receiving():  # a request whose body never comes
        await handled_everything(inbox)
    assert len(seen) == 40


def test_json_that_orjson_refuses_but_python_reads_is_accepted():
    # An escaped lone surrogate: a homeserver can relay one from a hostile client, and
    # refusing the transaction would make it resend that transaction forever.
    assert parse_json(b'{"body": "\\ud800"}') == {"body": "\ud800"}
    assert parse_json('{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    for bad in (b"", b"{", b"\xff\xfe", b"{'single': 1}"):
        with pytest.raises(ValueError):
            parse_json(bad)


@pytest.mark.asyncio(loop_scope="function")
async def test_past_the_memory_limit_transactions_are_read_back_in_order_once(
    anywhere_database_url, monkeypatch
):
    """A stalled plugin: the homeserver keeps sending, memory stays bounded, and every
    event is handled once, in order, when handling resumes."""
    monkeypatch.setattr(inbox_module, "FRESH_LIMIT", 3)
    db = await open_database(anywhere_database_url)
    seen: list[str] = []
    stalled = asyncio.Event()

    async def dispatch(event):
        await stalled.wait()
        seen.append(event.event_id)

    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, dispatch)
        inbox.start()
        for t in range(10):
            await inbox.store(f"t{t}", *txn(message(2 * t), message(2 * t + 1)))
            assert len(inbox._fresh) <= 3
        stalled.set()
        await handled_everything(inbox)
        for t in range(10, 12):  # and memory is used again afterwards
            await inbox.store(f"t{t}", *txn(message(2 * t), message(2 * t + 1)))
        await handled_everything(inbox)
        assert seen == [f"$e{n}" for n in range(24)]
        await inbox.stop()
    finally:
        await db.stop()
