"""The durable transaction inbox.

A transaction is written to the database, in one database transaction, before the
homeserver gets its 200; a transaction id seen before (also before a restart) changes
nothing. A single worker hands stored events to the dispatcher in the order they
arrived and advances a cursor; after a crash, everything past the cursor is handled
again (at least once — sends made through the event context are deduplicated, so people
see each answer once).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from mautrix.util.async_db import Database

from .events import MatrixEvent

BATCH = 200
log = structlog.get_logger("anywhere.inbox")


class Inbox:
    def __init__(self, db: Database, dispatch: Callable[[MatrixEvent], Awaitable[None]]) -> None:
        self.db = db
        self.dispatch = dispatch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.handled_seq = 0

    async def store(self, txn_id: str, events: list[dict], ephemeral: list[dict]) -> bool:
        """Store a transaction; False if this transaction id was stored before."""
        rows = [(txn_id, False, json.dumps(e)) for e in events]
        rows += [(txn_id, True, json.dumps(e)) for e in ephemeral]
        async with self.db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO inbox_txn (txn_id, received_at, event_count) VALUES ($1, $2, $3) "
                "ON CONFLICT (txn_id) DO NOTHING",
                txn_id,
                int(time.time() * 1000),
                len(rows),
            )
            if not _inserted(status):
                return False
            if rows:
                await conn.executemany(
                    "INSERT INTO inbox_event (txn_id, ephemeral, body) VALUES ($1, $2, $3)", rows
                )
        self._wakeup.set()
        return True

    async def pending_count(self) -> int:
        return await self.db.fetchval(
            "SELECT COUNT(*) FROM inbox_event WHERE seq > "
            "(SELECT handled_seq FROM inbox_cursor WHERE id = 1)"
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="anywhere-inbox")

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._task:
            await self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        self.handled_seq = await self.db.fetchval(
            "SELECT handled_seq FROM inbox_cursor WHERE id = 1"
        )
        while not self._stopping:
            self._wakeup.clear()
            rows = await self.db.fetch(
                "SELECT seq, txn_id, ephemeral, body FROM inbox_event WHERE seq > $1 "
                "ORDER BY seq LIMIT $2",
                self.handled_seq,
                BATCH,
            )
            if not rows:
                await self._wakeup.wait()
                continue
            for row in rows:
                event = MatrixEvent(json.loads(row["body"]), row["txn_id"], bool(row["ephemeral"]))
                try:
                    await self.dispatch(event)
                except Exception:  # the dispatcher isolates plugins; this is a last guard
                    log.exception(
                        "event dispatch failed", txn_id=row["txn_id"], event_id=event.event_id
                    )
                self.handled_seq = row["seq"]
                if self._stopping:
                    break
            await self._save_cursor()

    async def _save_cursor(self) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE inbox_cursor SET handled_seq = $1 WHERE id = 1", self.handled_seq
            )
            # Handled events are not needed any more; transaction ids are kept for replays.
            await conn.execute("DELETE FROM inbox_event WHERE seq <= $1", self.handled_seq)


def _inserted(status: Any) -> bool:
    """asyncpg returns 'INSERT 0 1'; the SQLite wrapper returns a cursor with rowcount."""
    if isinstance(status, str):
        return status.rsplit(" ", 1)[-1] != "0"
    return getattr(status, "rowcount", 1) != 0
