"""Transaction ids the homeserver reuses (Synapse on SQLite numbers its transactions again
after a restart) against replays (the same id with the same events), on SQLite and on
PostgreSQL; and a database written before the event lists were kept."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog

from anywhere.bridge.inbox import Inbox
from anywhere.bridge.schema import CORE_MIGRATIONS, v1_inbox, v2_rooms, v3_inbox_bodies, v4_jobs
from anywhere.storage import Migrations, open_database, run_migrations

pytestmark = pytest.mark.asyncio(loop_scope="function")


def txn(*event_ids: str, ephemeral: tuple[dict, ...] = ()) -> tuple[str, dict]:
    body = {
        "events": [{"event_id": e, "type": "m.room.message", "content": {}} for e in event_ids],
        "ephemeral": list(ephemeral),
    }
    return json.dumps(body), body


TYPING = {"type": "m.typing", "room_id": "!r:x", "content": {"user_ids": []}}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, event) -> None:
        self.seen.append(event.event_id or event.type)


async def handled_everything(inbox: Inbox) -> None:
    for _ in range(250):
        if await inbox.pending_count() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker did not handle everything")


async def test_a_reused_id_with_other_events_is_a_new_transaction_and_a_replay_is_not(
    anywhere_database_url,
):
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)
        inbox.start()
        with structlog.testing.capture_logs() as logs:
            assert await inbox.store("1", *txn("$a", "$b", ephemeral=(TYPING,))) is True
            # Synapse's retry drops the ephemeral part: still the same transaction
            assert await inbox.store("1", *txn("$a", "$b")) is False
            assert await inbox.store("2", *txn("$c")) is True
            # the homeserver restarted and counts from 1 again
            assert await inbox.store("1", *txn("$d")) is True
            assert await inbox.store("2", *txn("$e")) is True
            assert await inbox.store("1", *txn("$d")) is False  # a retry of the new one
            assert await inbox.store("3", *txn("$f")) is True
            assert await inbox.store("1", *txn("$g")) is True  # and again
            await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["$a", "$b", "m.typing", "$c", "$d", "$e", "$f", "$g"]
        notices = [e for e in logs if "reused a transaction id" in e["event"]]
        # once when the homeserver starts reusing ids, not for every transaction
        assert [(n["log_level"], n["txn_id"]) for n in notices] == [
            ("info", "1"),
            ("info", "1"),
        ]
        rows = await db.fetch("SELECT txn_id, superseded, event_ids FROM inbox ORDER BY seq")
        assert [(r["txn_id"], bool(r["superseded"]), r["event_ids"]) for r in rows] == [
            ("1", True, '["$a","$b"]'),
            ("2", True, '["$c"]'),
            ("1", True, '["$d"]'),
            ("2", False, '["$e"]'),
            ("3", False, '["$f"]'),
            ("1", False, '["$g"]'),
        ]
    finally:
        await db.stop()


async def test_a_transaction_of_ephemeral_events_only_is_never_taken_for_a_replay(
    anywhere_database_url,
):
    """Its list of persistent events is empty, so a reuse of its id cannot be told from a
    retry (which would carry nothing): the new one is kept, as a retry adds nothing."""
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)
        inbox.start()
        assert await inbox.store("7", *txn(ephemeral=(TYPING,))) is True
        assert await inbox.store("7", *txn(ephemeral=(dict(TYPING, room_id="!s:x"),))) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["m.typing", "m.typing"]
    finally:
        await db.stop()


async def test_events_already_handled_are_not_handled_again_under_a_new_transaction(
    anywhere_database_url,
):
    """A retry whose list differs (the homeserver could not load one of its events again)
    is stored as new; its events handled before are skipped, also after a restart."""
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)
        inbox.start()
        assert await inbox.store("5", *txn("$a", "$b", "$c")) is True
        await handled_everything(inbox)
        assert await inbox.store("5", *txn("$a", "$c")) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["$a", "$b", "$c"]
        await db.stop()

        db = await open_database(anywhere_database_url)
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)
        inbox.start()
        assert await inbox.store("6", *txn("$b", "$d")) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["$a", "$b", "$c", "$d"]
    finally:
        await db.stop()


async def test_a_deployment_deaf_to_reused_ids_hears_them_after_upgrading(
    anywhere_database_url,
):
    """A database written before the lists were kept: handled transactions 1-3 (bodies
    cleared) and 4 stored but not handled. After the upgrade the homeserver's new
    transactions 1-3 are handled, 4 stays a replay and is handled once, and new
    transactions come after every old one."""
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        old_schema = Migrations("core", [v1_inbox, v2_rooms, v3_inbox_bodies, v4_jobs])
        await run_migrations(db, [old_schema])
        for n in range(1, 5):
            await db.execute(
                "INSERT INTO inbox (txn_id, received_at, body) VALUES ($1, 0, $2)",
                str(n),
                "" if n < 4 else txn("$old4")[0],
            )
        await db.execute("UPDATE inbox_cursor SET handled_seq = 4, handled_index = 0")
        await run_migrations(db, [CORE_MIGRATIONS])

        inbox = Inbox(db, recorder)
        assert await inbox.store("4", *txn("$old4")) is False  # its list comes from its body
        inbox.start()
        await handled_everything(inbox)
        assert recorder.seen == ["$old4"]
        for n in range(1, 4):
            assert await inbox.store(str(n), *txn(f"$new{n}")) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["$old4", "$new1", "$new2", "$new3"]
        rows = await db.fetch("SELECT seq, txn_id FROM inbox ORDER BY seq")
        assert [r["txn_id"] for r in rows] == ["1", "2", "3", "4", "1", "2", "3"]
        assert rows[4]["seq"] > 4  # seq values are never used twice
    finally:
        await db.stop()


async def test_a_reused_id_of_an_ephemeral_only_transaction_carrying_events_is_handled(
    anywhere_database_url,
):
    """The row under the id holds an empty list (typing only, handled, body cleared): the
    same id with a persistent event is new, and the event is handled."""
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)
        inbox.start()
        assert await inbox.store("77", *txn(ephemeral=(TYPING,))) is True
        await handled_everything(inbox)
        await inbox.stop()  # saves the position: the body is cleared
        assert await db.fetchval("SELECT body FROM inbox WHERE txn_id = '77'") == ""
        inbox = Inbox(db, recorder)
        inbox.start()
        assert await inbox.store("77", *txn("$lost")) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["m.typing", "$lost"]
    finally:
        await db.stop()


async def test_events_of_a_transaction_cut_off_mid_way_are_handled_after_a_restart(
    anywhere_database_url,
):
    """The bridge died after handling the first of three events of a transaction: the
    memory of handled events, refilled at start, holds only transactions handled
    completely, so the other two (and a retry carrying one of them) are handled."""
    db = await open_database(anywhere_database_url)
    recorder = Recorder()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        inbox = Inbox(db, recorder)  # not started: everything waits in the database
        assert await inbox.store("1", *txn("$z")) is True
        assert await inbox.store("2", *txn("$a", "$b", "$c")) is True
        second = await db.fetchval("SELECT seq FROM inbox WHERE txn_id = '2'")
        await db.execute("UPDATE inbox_cursor SET handled_seq = $1, handled_index = 1", second)
        inbox.start()
        await handled_everything(inbox)
        assert recorder.seen == ["$b", "$c"]
        assert await inbox.store("3", *txn("$z", "$c", "$d")) is True
        await handled_everything(inbox)
        await inbox.stop()
        assert recorder.seen == ["$b", "$c", "$d"]
    finally:
        await db.stop()
