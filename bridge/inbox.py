"""The durable transaction inbox.

A transaction is written to the database — its raw body and the list of its event ids, as
one row, in one autocommitted statement — before the homeserver gets its 200. A
transaction id seen before (also before a restart) carrying the same list of event ids is
a replay and changes nothing. The same id with another list is the homeserver numbering
its transactions again — Synapse on SQLite does after every restart (it counts on from
the highest id still in its table, and deletes each transaction once delivered) — and is
stored as a new transaction. Retries may lack the ephemeral, to-device and device-list
parts of the first attempt, so only the persistent events' ids are compared, never whole
bodies. An id whose row holds no list (bodies cleared before the lists were kept) or an
empty one is taken as new; the worker skips persistent events it has recently handled
(``HandledEvents``), so a retry taken as new is not handled twice.

A single worker hands the events to the dispatcher in the order they arrived.
Transactions this process stores reach the worker already parsed, in memory; bodies are
read back from the database only for what was stored but not handled before the worker
started (after a restart). One bridge process owns an inbox.

Acknowledgements come first: while a transaction is being received and stored, the
worker waits (see ``Inbox.receiving``), and on SQLite the insert runs on the event loop's
own thread through a connection of the inbox's own (see ``SQLiteWriter``).

The worker's position (transaction ``seq`` and event index) is saved at most every
``CURSOR_INTERVAL`` seconds, when idle, and at shutdown. After a crash, events past the
saved position are handled again: delivery is at least once. Sends made through the
event context carry transaction ids derived from the event, so the homeserver drops the
repeats and people see each answer once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import structlog
from mautrix.util.async_db import Database, Scheme
from mautrix.util.async_db.aiosqlite import POSITIONAL_PARAM_PATTERN

from . import metrics
from .events import MatrixEvent

BATCH = 100
YIELD_EVERY = 16
# Handling gives way to transactions being received while fewer than this many are
# stored and waiting for it; past that, both take turns (see Inbox.receiving).
AHEAD_LIMIT = 200
# Parsed transactions kept in memory for the worker; past this many, further ones are
# read back from the database when the worker gets to them (memory stays bounded when
# handling stalls, e.g. a plugin waiting for an unreachable server).
FRESH_LIMIT = 500
# The longest handling waits for one transaction being received (a stalled sender must
# not stop it).
GIVE_WAY_SECONDS = 0.05
INSERT_TXN = (
    "INSERT INTO inbox (txn_id, received_at, body, event_ids) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (txn_id, superseded) DO NOTHING RETURNING seq"
)
INSERT_TXN_SQLITE = POSITIONAL_PARAM_PATTERN.sub(r"?\1", INSERT_TXN)
KNOWN_EVENT_IDS = "SELECT event_ids FROM inbox WHERE txn_id = $1 AND superseded = 0"
SUPERSEDE_TXN = "UPDATE inbox SET superseded = seq WHERE txn_id = $1 AND superseded = 0"
# Persistent event ids the worker remembers having handled (see HandledEvents); at start,
# read back from the lists of the transactions handled last.
HANDLED_MEMORY = 20_000
HANDLED_SEED_ROWS = 1_000
CURSOR_INTERVAL = 1.0
CHECKPOINT_INTERVAL = 1.0
SAVE_POSITION = "UPDATE inbox_cursor SET handled_seq = $1, handled_index = $2 WHERE id = 1"
# Bodies of handled transactions are not needed; their ids stay for replays.
CLEAR_BODIES = "UPDATE inbox SET body = '' WHERE seq >= $1 AND seq < $2"
# for the inbox's own sqlite3 connection, as mautrix's SQLite pool translates them
SAVE_POSITION_SQLITE = POSITIONAL_PARAM_PATTERN.sub(r"?\1", SAVE_POSITION)
CLEAR_BODIES_SQLITE = POSITIONAL_PARAM_PATTERN.sub(r"?\1", CLEAR_BODIES)
log = structlog.get_logger("anywhere.inbox")


def parse_json(raw: str | bytes) -> Any:
    """JSON with orjson (several times faster than the json module on transaction
    bodies), falling back to the json module for what orjson refuses and Python's JSON
    accepts — escaped lone surrogates, which a homeserver can relay from a hostile
    client: refusing those would make the homeserver resend the transaction forever.
    Raises ValueError for what is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def transaction_events(body: dict[str, Any]) -> list[tuple[bool, dict[str, Any]]]:
    """(ephemeral?, event) for every well-formed event of a transaction body, in order."""
    events = [(False, e) for e in body.get("events") or () if isinstance(e, dict)]
    ephemeral = body.get("ephemeral") or body.get("de.sorunome.msc2409.ephemeral") or ()
    if isinstance(ephemeral, list):
        events += [(True, e) for e in ephemeral if isinstance(e, dict)]
    return events


def persistent_event_ids(body: dict[str, Any]) -> list[str]:
    """The ids of a transaction body's persistent events, in order."""
    return [
        e["event_id"]
        for e in body.get("events") or ()
        if isinstance(e, dict) and isinstance(e.get("event_id"), str)
    ]


class HandledEvents:
    """The ids of the persistent events handled last (at most ``limit``): a transaction
    taken as new although the homeserver was retrying one (see the module docstring)
    does not hand its events to plugins twice."""

    def __init__(self, limit: int = HANDLED_MEMORY) -> None:
        self.limit = limit
        self._ids: set[str] = set()
        self._order: collections.deque[str] = collections.deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        if event_id in self._ids:
            return
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self.limit:
            self._ids.discard(self._order.popleft())


def write_lock_taken(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SQLiteWriter:
    """The inbox's own SQLite connection, used on the event loop's thread.

    An acknowledgement waits for one INSERT and its fsync; going through a pooled
    connection's thread instead costs two thread hops, each of which waits for the GIL
    while the worker is busy handing events to plugins — measured at several times the
    write itself (bench/bench_ingest.py). The statement autocommits. The connection never
    waits for SQLite's write lock (``timeout=0``): while another connection holds it,
    the insert goes through the pool, whose connections wait; a short wait here would
    block the event loop, which the holder of the lock may need to finish.

    WAL checkpoints (copying the log into the database file) are not left to this
    connection, where they would block the event loop: the inbox runs them through the
    pool every ``CHECKPOINT_INTERVAL`` while no transaction is being stored, so that the
    next insert starts the log over. Under a steady load a log that is never started
    over grows, and an fsync that extends the file costs more (measured: 210 µs instead
    of 125 µs per insert).
    """

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Debian builds SQLite with secure_delete on, which zeroes every page that
        # clearing handled bodies frees: as many pages written again as were stored.
        # "fast" zeroes only what costs no extra writes; freed pages keep old bodies
        # until reused (the homeserver keeps those events anyway).
        self.conn.execute("PRAGMA secure_delete = FAST")
        self.inserted = 0  # since the last checkpoint

    def insert(
        self, txn_id: str, received_at: int, raw_body: str, event_ids: str
    ) -> int | None | bool:
        """The new seq; None for a known id; False when the write lock is taken."""
        try:
            rows = self.conn.execute(
                INSERT_TXN_SQLITE, (txn_id, received_at, raw_body, event_ids)
            ).fetchall()
            self.inserted += 1
        except sqlite3.OperationalError as exc:
            if write_lock_taken(exc):
                return False
            raise
        return rows[0][0] if rows else None

    def save_position(self, position: tuple[int, int], cleared: tuple[int, int]) -> bool:
        """The worker's position, and bodies no longer needed, in one transaction; False
        when the write lock is taken (nothing written)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if write_lock_taken(exc):
                return False
            raise
        try:
            self.conn.execute(SAVE_POSITION_SQLITE, position)
            self.conn.execute(CLEAR_BODIES_SQLITE, cleared)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return True

    def close(self) -> None:
        self.conn.close()


class Inbox:
    def __init__(
        self,
        db: Database,
        dispatch: Callable[[MatrixEvent], Awaitable[None]],
        before_events: Callable[[dict[str, Any], str], Awaitable[None]] | None = None,
        before_save: Callable[[], Awaitable[None]] | None = None,
        after_store: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.dispatch = dispatch
        # Given each transaction's body before its events (the encryption reads the
        # to-device, device-list and key-count parts there: room keys before the messages
        # they open).
        self.before_events = before_events
        # Awaited before the worker's position is saved: what handling the events before
        # it wrote in memory only is made durable first (the encryption's replay
        # protection), since those events are not handled again after a crash.
        self.before_save = before_save
        # Given each transaction's body once it is stored, before it is queued for the
        # worker and before the homeserver is answered: work that can start ahead of
        # dispatch (the encryption sends its encrypted events to its decryption process).
        self.after_store = after_store
        self._writer: SQLiteWriter | None = None
        path = getattr(db, "_path", None)  # mautrix's SQLite pool keeps the file's path there
        if db.scheme == Scheme.SQLITE and isinstance(path, str) and path not in ("", ":memory:"):
            self._writer = SQLiteWriter(path)
        # (seq, txn_id, parsed body) stored by this process, waiting for the worker
        self._fresh: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque()
        self._store_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._checkpoints: asyncio.Task | None = None
        self._stopping = False
        # Position: every event of transactions before ``seq`` is handled, and the first
        # ``index`` events of transaction ``seq``.
        self.handled_seq = 0
        self.handled_index = 0
        self._saved = (0, 0)
        self._saved_at = 0.0
        self._cleared_below = 0
        self._overflow = False
        self._receiving = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self.handled_events = HandledEvents()
        self._reusing_ids = False  # the last id stored was one the homeserver reused

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Around receiving and storing one transaction.

        The homeserver sends the next transaction only after the 200 for this one, and
        the events are safe on disk once stored, so while a transaction is being received
        the worker does not hand events to plugins (up to ``AHEAD_LIMIT`` transactions
        ahead of it): the acknowledgement does not wait behind handling, and handling
        catches up between transactions. Past the limit they take turns, which slows the
        acknowledgements to the pace of handling (the homeserver queues the rest).
        """
        self._receiving += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._receiving -= 1
            if not self._receiving:
                self._quiet.set()

    async def _give_way(self) -> None:
        """Let the loop run; wait while a transaction is being received (see receiving)."""
        # Twice: a request that arrived meanwhile is read from the socket during the
        # first turn and reaches its handler (which counts as receiving) in the second.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if self._receiving and not self._overflow and len(self._fresh) < AHEAD_LIMIT:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), GIVE_WAY_SECONDS)

    async def store(self, txn_id: str, raw_body: str, body: dict[str, Any]) -> bool:
        """Store a transaction; False for a replay (a known id with the same event ids).

        ``raw_body`` is kept as it came; ``body`` is its parsed form, handed to the worker.
        Stores are serialised, so transactions reach the worker in ``seq`` order.
        """
        event_ids = persistent_event_ids(body)
        listed = orjson.dumps(event_ids).decode()
        received_at = int(time.time() * 1000)
        async with self._store_lock:
            seq = await self._insert(txn_id, received_at, raw_body, listed)
            if seq is None:
                known = await self.db.fetchval(KNOWN_EVENT_IDS, txn_id)
                if event_ids and known is not None and parse_json(known) == event_ids:
                    return False
                seq = await self._store_under_reused_id(txn_id, received_at, raw_body, listed)
                if not self._reusing_ids:  # a notice, not a warning: nothing is wrong
                    log.info(
                        "the homeserver reused a transaction id for new events; storing "
                        "them as a new transaction (Synapse on SQLite numbers its "
                        "transactions again after a restart)",
                        txn_id=txn_id,
                    )
                self._reusing_ids = True
            else:
                self._reusing_ids = False
            if self._task is not None:  # before start-up the worker reads it back instead
                if self._overflow or len(self._fresh) >= FRESH_LIMIT:
                    self._overflow = True  # see FRESH_LIMIT
                else:
                    await self._work_ahead(txn_id, body)  # before the worker can take it
                    self._fresh.append((seq, txn_id, body))
                self._wakeup.set()
            return True

    async def _work_ahead(self, txn_id: str, body: dict[str, Any]) -> None:
        if self.after_store is None:
            return
        try:
            await self.after_store(body)
        except Exception:  # only work ahead: the worker does it anyway
            log.exception("work ahead of a stored transaction failed", txn_id=txn_id)

    async def _insert(
        self, txn_id: str, received_at: int, raw_body: str, event_ids: str
    ) -> int | None:
        """The new seq; None when ``txn_id`` is known (nothing written)."""
        if self._writer is not None:
            seq = self._writer.insert(txn_id, received_at, raw_body, event_ids)
            if seq is not False:
                return seq
            metrics.INBOX_WRITE_LOCK_BUSY.inc()
        if self.db.scheme != Scheme.SQLITE:
            return await self.db.fetchval(INSERT_TXN, txn_id, received_at, raw_body, event_ids)
        # One trip to SQLite's thread instead of two (execute, then fetch). The statement
        # autocommits.
        async with self.db.acquire() as conn:
            rows = await conn.wrapped.execute_fetchall(
                INSERT_TXN_SQLITE,
                (txn_id, received_at, raw_body, event_ids),
            )
        return rows[0][0] if rows else None

    async def _store_under_reused_id(
        self, txn_id: str, received_at: int, raw_body: str, event_ids: str
    ) -> int:
        """Store a transaction whose id an earlier one holds; the earlier one keeps its
        row (and its place in the order), marked as superseded."""
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(SUPERSEDE_TXN, txn_id)
            return await conn.fetchval(INSERT_TXN, txn_id, received_at, raw_body, event_ids)

    async def pending_count(self) -> int:
        """Transactions stored and not completely handled."""
        seq, _ = await self._load_cursor()
        return await self.db.fetchval("SELECT COUNT(*) FROM inbox WHERE seq >= $1", seq)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="anywhere-inbox")
        if self._writer is not None:
            self._checkpoints = asyncio.create_task(self._checkpoint(), name="anywhere-wal")

    async def _checkpoint(self) -> None:
        """See SQLiteWriter: a checkpoint while no insert runs, after some were made."""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            if self._writer is None or not self._writer.inserted:
                continue
            async with self._store_lock:
                self._writer.inserted = 0
                try:
                    # fetched, not executed: a statement left with rows to read would hold
                    # a read transaction open, and the log could never start over
                    await self.db.fetchrow("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:
                    log.exception("WAL checkpoint failed")

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._task:
            await self._task
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _load_cursor(self) -> tuple[int, int]:
        row = await self.db.fetchrow(
            "SELECT handled_seq, handled_index FROM inbox_cursor WHERE id = 1"
        )
        return (row["handled_seq"], row["handled_index"]) if row else (0, 0)

    async def _remember_handled_events(self) -> None:
        """Seed ``handled_events`` with the events of the transactions handled last
        before the saved position (from there on they are handled again: at least
        once)."""
        rows = await self.db.fetch(
            "SELECT event_ids FROM inbox WHERE seq < $1 AND event_ids IS NOT NULL "
            "ORDER BY seq DESC LIMIT $2",
            self.handled_seq,
            HANDLED_SEED_ROWS,
        )
        for row in reversed(rows):
            for event_id in parse_json(row["event_ids"]):
                self.handled_events.add(event_id)

    async def _run(self) -> None:
        self.handled_seq, self.handled_index = self._saved = await self._load_cursor()
        await self._remember_handled_events()
        try:
            await self._handle_backlog()
            while not self._stopping:
                if not self._fresh and self._overflow:
                    # what did not fit in memory: from the database, in order (new ones
                    # go to memory again meanwhile; those the backlog also reads are
                    # skipped below)
                    self._overflow = False
                    await self._handle_backlog()
                    continue
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
        """Transactions stored but not in memory: before the worker started (e.g. before
        a restart), or past FRESH_LIMIT."""
        while not self._stopping:
            rows = await self.db.fetch(
                "SELECT seq, txn_id, body FROM inbox WHERE seq >= $1 ORDER BY seq LIMIT $2",
                self.handled_seq,
                BATCH,
            )
            if not rows:
                return
            for row in rows:
                body = parse_json(row["body"]) if row["body"] else {}
                await self._handle(row["seq"], row["txn_id"], body)
                await self._save_cursor()
                if self._stopping:
                    return

    async def _handle(self, seq: int, txn_id: str, body: dict[str, Any]) -> None:
        start = self.handled_index if seq == self.handled_seq else 0
        if start == 0 and self.before_events is not None:
            try:
                await self.before_events(body, txn_id)
            except Exception:  # a last guard, as for dispatch
                log.exception("transaction's non-room parts failed", txn_id=txn_id)
        events = transaction_events(body)
        for index in range(start, len(events)):
            ephemeral, raw = events[index]
            event = MatrixEvent(raw, txn_id, ephemeral)
            event_id = None if ephemeral else raw.get("event_id")
            if not isinstance(event_id, str):
                event_id = None
            if event_id is not None and event_id in self.handled_events:
                log.info("event already handled", txn_id=txn_id, event_id=event_id)
            else:
                try:
                    await self.dispatch(event)
                except Exception:  # the dispatcher isolates plugins; this is a last guard
                    log.exception("event dispatch failed", txn_id=txn_id, event_id=event_id)
                if event_id is not None:
                    self.handled_events.add(event_id)
            self.handled_seq, self.handled_index = seq, index + 1
            if self._stopping:
                return
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await self._give_way()
        # the whole transaction is handled: the position moves to the next one
        self.handled_seq, self.handled_index = seq + 1, 0

    async def _save_cursor(self, force: bool = False) -> None:
        position = (self.handled_seq, self.handled_index)
        if position == self._saved:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < CURSOR_INTERVAL:
            return
        if self.before_save is not None:
            await self.before_save()
        cleared = (self._cleared_below, position[0])
        async with self._store_lock:  # not while a checkpoint runs (see SQLiteWriter)
            saved = self._writer is not None and self._writer.save_position(position, cleared)
        if not saved:
            async with self.db.acquire() as conn, conn.transaction():
                await conn.execute(SAVE_POSITION, *position)
                await conn.execute(CLEAR_BODIES, *cleared)
        self._cleared_below = position[0]
        self._saved, self._saved_at = position, now
