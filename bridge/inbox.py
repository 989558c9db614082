"""The durable transaction inbox.

A transaction is written to the database — its raw body, as one row, in one autocommitted
statement — before the homeserver gets its 200; a transaction id seen before (also
before a restart) changes nothing. A single worker hands the events to the dispatcher in
the order they arrived. Transactions this process stores reach the worker already parsed,
in memory; bodies are read back from the database only for what was stored but not
handled before the worker started (after a restart). One bridge process owns an inbox.

The worker's position (transaction ``seq`` and event index) is saved at most every
``CURSOR_INTERVAL`` seconds, when idle, and at shutdown. After a crash, events past the
saved position are handled again: delivery is at least once. Sends made through the
event context carry transaction ids derived from the event, so the homeserver drops the
repeats and people see each answer once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from mautrix.util.async_db import Database, Scheme

from .events import MatrixEvent

BATCH = 100
YIELD_EVERY = 25
INSERT_TXN = (
    "INSERT INTO inbox (txn_id, received_at, body) VALUES ($1, $2, $3) "
    "ON CONFLICT (txn_id) DO NOTHING RETURNING seq"
)
INSERT_TXN_SQLITE = INSERT_TXN.replace("$1", "?").replace("$2", "?").replace("$3", "?")
CURSOR_INTERVAL = 1.0
log = structlog.get_logger("anywhere.inbox")


def transaction_events(body: dict[str, Any]) -> list[tuple[bool, dict[str, Any]]]:
    """(ephemeral?, event) for every well-formed event of a transaction body, in order."""
    events = [(False, e) for e in body.get("events") or () if isinstance(e, dict)]
    ephemeral = body.get("ephemeral") or body.get("de.sorunome.msc2409.ephemeral") or ()
    if isinstance(ephemeral, list):
        events += [(True, e) for e in ephemeral if isinstance(e, dict)]
    return events


class Inbox:
    def __init__(self, db: Database, dispatch: Callable[[MatrixEvent], Awaitable[None]]) -> None:
        self.db = db
        self.dispatch = dispatch
        # (seq, txn_id, parsed body) stored by this process, waiting for the worker
        self._fresh: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque()
        self._store_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        # Position: every event of transactions before ``seq`` is handled, and the first
        # ``index`` events of transaction ``seq``.
        self.handled_seq = 0
        self.handled_index = 0
        self._saved = (0, 0)
        self._saved_at = 0.0
        self._cleared_below = 0

    async def store(self, txn_id: str, raw_body: str, body: dict[str, Any]) -> bool:
        """Store a transaction; False if this transaction id was stored before.

        ``raw_body`` is kept as it came; ``body`` is its parsed form, handed to the worker.
        Stores are serialised, so transactions reach the worker in ``seq`` order.
        """
        async with self._store_lock:
            seq = await self._insert(txn_id, int(time.time() * 1000), raw_body)
            if seq is None:
                return False
            if self._task is not None:  # before start-up the worker reads it back instead
                self._fresh.append((seq, txn_id, body))
                self._wakeup.set()
            return True

    async def _insert(self, txn_id: str, received_at: int, raw_body: str) -> int | None:
        if self.db.scheme != Scheme.SQLITE:
            return await self.db.fetchval(INSERT_TXN, txn_id, received_at, raw_body)
        # One trip to SQLite's thread instead of two (execute, then fetch): this is on the
        # path of every acknowledgement. The statement autocommits.
        async with self.db.acquire() as conn:
            rows = await conn.wrapped.execute_fetchall(
                INSERT_TXN_SQLITE,
                (txn_id, received_at, raw_body),
            )
        return rows[0][0] if rows else None

    async def pending_count(self) -> int:
        """Transactions stored and not completely handled."""
        seq, _ = await self._load_cursor()
        return await self.db.fetchval("SELECT COUNT(*) FROM inbox WHERE seq >= $1", seq)

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

    async def _load_cursor(self) -> tuple[int, int]:
        row = await self.db.fetchrow(
            "SELECT handled_seq, handled_index FROM inbox_cursor WHERE id = 1"
        )
        return (row["handled_seq"], row["handled_index"]) if row else (0, 0)

    async def _run(self) -> None:
        self.handled_seq, self.handled_index = self._saved = await self._load_cursor()
        try:
            await self._handle_backlog()
            while not self._stopping:
                if not self._fresh:
                    self._wakeup.clear()  # before the await below, so no wake-up is lost
                    await self._save_cursor(force=True)
                    if not self._fresh:
                        await self._wakeup.wait()
                    continue
                seq, txn_id, body = self._fresh.popleft()
                if seq >= self.handled_seq:  # else: already handled from the backlog
                    await self._handle(seq, txn_id, body)
                    await self._save_cursor()
        finally:
            await self._save_cursor(force=True)

    async def _handle_backlog(self) -> None:
        """Transactions stored before the worker started (e.g. before a restart)."""
        while not self._stopping:
            rows = await self.db.fetch(
                "SELECT seq, txn_id, body FROM inbox WHERE seq >= $1 ORDER BY seq LIMIT $2",
                self.handled_seq,
                BATCH,
            )
            if not rows:
                return
            for row in rows:
                body = json.loads(row["body"]) if row["body"] else {}
                await self._handle(row["seq"], row["txn_id"], body)
                await self._save_cursor()
                if self._stopping:
                    return

    async def _handle(self, seq: int, txn_id: str, body: dict[str, Any]) -> None:
        start = self.handled_index if seq == self.handled_seq else 0
        events = transaction_events(body)
        for index in range(start, len(events)):
            ephemeral, raw = events[index]
            event = MatrixEvent(raw, txn_id, ephemeral)
            try:
                await self.dispatch(event)
            except Exception:  # the dispatcher isolates plugins; this is a last guard
                log.exception("event dispatch failed", txn_id=txn_id, event_id=event.event_id)
            self.handled_seq, self.handled_index = seq, index + 1
            if self._stopping:
                return
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let acknowledgements through between events
        # the whole transaction is handled: the position moves to the next one
        self.handled_seq, self.handled_index = seq + 1, 0

    async def _save_cursor(self, force: bool = False) -> None:
        position = (self.handled_seq, self.handled_index)
        if position == self._saved:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < CURSOR_INTERVAL:
            return
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE inbox_cursor SET handled_seq = $1, handled_index = $2 WHERE id = 1",
                *position,
            )
            # Bodies of handled transactions are not needed; their ids stay for replays.
            await conn.execute(
                "UPDATE inbox SET body = '' WHERE seq >= $1 AND seq < $2",
                self._cleared_below,
                position[0],
            )
        self._cleared_below = position[0]
        self._saved, self._saved_at = position, now
