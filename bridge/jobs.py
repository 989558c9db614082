"""Durable background jobs: slow work a plugin starts from an event without holding up
the events after it.

Events are handled one after the other, so a handler that takes long (fetching a large
file, say) would delay every plugin's next events. Instead it enqueues a job — a row in
the bridge's database, written before the handler returns — and returns at once; a few
workers run the jobs beside the event worker. A job is run at least once: one the
bridge stopped in the middle of (a crash, a restart) runs again when it comes back, and
one that raises is retried later with a growing delay. Make handlers idempotent (the
drive, for example, finds a file it already saved from the same event).

Plugins name their kinds of job with ``anywhere_job_handlers`` and enqueue with
``await bridge.jobs.enqueue(kind, payload, key=...)``; ``key`` makes enqueueing
idempotent (the same key while the job waits or runs adds nothing). A job that keeps
failing is kept, marked ``failed``, after ``MAX_ATTEMPTS`` tries, and reported in the
log and in ``anywhere_jobs_total{outcome="failed"}`` (``!jobs`` lists them, ``!jobs retry``
queues them again) — never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from . import metrics
from .errors import PluginLoadError

if TYPE_CHECKING:
    from mautrix.util.async_db import Database

    from .pluginmanager import PluginManager

log = structlog.get_logger("anywhere.jobs")
WORKERS = 4
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 600.0
#: How long ``stop`` waits for the workers to end (cancelling them again each second)
#: before it leaves the ones still running behind.
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    """What a job handler gets: its payload (as enqueued), and how often it was tried."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempt: int  # 1 on the first run


JobHandler = Callable[[Job], Awaitable[None]]


def collect_job_handlers(plugins: PluginManager) -> dict[str, tuple[str, JobHandler]]:
    """``{kind: (plugin, handler)}`` from every plugin's ``anywhere_job_handlers``."""
    handlers = plugins.collect("anywhere_job_handlers", "job kind")
    for kind, (name, handler) in handlers.items():
        if not callable(handler):
            raise PluginLoadError(f"plugin {name!r}: the handler of {kind!r} is not callable")
    return handlers


def retry_delay(attempt: int) -> float:
    """Seconds before try ``attempt + 1``: 2, 4, 8 ... up to ten minutes."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (attempt - 1))


def now_ms() -> int:
    return int(time.time() * 1000)


class Jobs:
    """The job queue and its workers (``bridge.jobs``)."""

    def __init__(self, db: Database, handlers: dict[str, tuple[str, JobHandler]]) -> None:
        self.db = db
        self.handlers = handlers
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self._claimed: set[int] = set()  # jobs a worker of this process is running
        self._stopping = False

    async def enqueue(self, kind: str, payload: dict[str, Any], *, key: str) -> bool:
        """Store a job for a worker; True if it was new (False: ``key`` is queued already).

        It is in the database when this returns. ``payload`` must be JSON; ``key`` names
        the job (e.g. ``"drive.save:" + event_id``) so that handling an event twice
        enqueues it once."""
        if kind not in self.handlers:
            raise ValueError(f"no plugin handles jobs of kind {kind!r} (anywhere_job_handlers)")
        added = await self.db.fetchval(
            "INSERT INTO job (kind, key, payload, state, attempts, not_before, created_at) "
            "VALUES ($1, $2, $3, 'queued', 0, 0, $4) ON CONFLICT (key) DO NOTHING "
            "RETURNING id",
            kind,
            key,
            json.dumps(payload),
            now_ms(),
        )
        if added is not None:
            self._wake.set()
        return added is not None

    async def waiting(self) -> int:
        """Jobs queued (or running), not failed."""
        return await self.db.fetchval("SELECT COUNT(*) FROM job WHERE state = 'queued'")

    async def failed(self, limit: int = 20) -> list[dict[str, Any]]:
        """The failed jobs, oldest first: id, kind, key, attempts, last_error."""
        rows = await self.db.fetch(
            "SELECT id, kind, key, attempts, last_error FROM job WHERE state = 'failed' "
            "ORDER BY id LIMIT $1",
            limit,
        )
        return [dict(row) for row in rows]

    async def retry(self, job_id: int | None = None) -> int:
        """Queue failed jobs again (one, or all when ``job_id`` is None), with their tries
        counted from zero; returns how many."""
        query = (
            "UPDATE job SET state = 'queued', attempts = 0, not_before = 0, last_error = NULL "
            "WHERE state = 'failed'"
        )
        if job_id is None:
            rows = await self.db.fetch(query + " RETURNING id")
        else:
            rows = await self.db.fetch(query + " AND id = $1 RETURNING id", job_id)
        self._wake.set()  # and the workers look at the queue again
        return len(rows)

    @property
    def running(self) -> bool:
        """Every worker is alive (for /health)."""
        return bool(self._workers) and not any(task.done() for task in self._workers)

    def start(self, workers: int = WORKERS) -> None:
        self._stopping = False
        self._workers = [
            asyncio.create_task(self._work(), name=f"anywhere-job-{n}") for n in range(workers)
        ]

    async def stop(self) -> None:
        """Stop the workers; a job cut off in the middle runs again at the next start.

        A cancellation can be lost: a handler may catch it, and on Python 3.11
        ``asyncio.wait_for`` drops it when what it waits for ends at that moment. So a
        worker also ends at its next turn once stopping, is cancelled again each
        second, and one still running after ``STOP_SECONDS`` is left behind with an
        error naming the jobs still running, so that the bridge's shutdown goes on."""
        self._stopping = True
        workers, self._workers = self._workers, []
        deadline = time.monotonic() + STOP_SECONDS
        left = {task for task in workers if not task.done()}
        while left and time.monotonic() < deadline:
            for task in left:
                task.cancel()
            _, left = await asyncio.wait(left, timeout=min(1.0, deadline - time.monotonic()))
        for task in workers:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error(
                    "a job worker had ended", worker=task.get_name(), exc_info=task.exception()
                )
        if left:
            log.error(
                "job workers did not stop; left running (their jobs run again at the next start)",
                workers=sorted(task.get_name() for task in left),
                running_jobs=sorted(self._claimed),
                waited_seconds=STOP_SECONDS,
            )

    async def _next(self) -> tuple[Job | None, float]:
        """The next due job no worker here runs, or None and how long until one is due."""
        rows = await self.db.fetch(
            "SELECT id, kind, key, payload, attempts, not_before FROM job "
            "WHERE state = 'queued' ORDER BY not_before, id LIMIT $1",
            len(self._claimed) + len(self._workers) + 1,
        )
        now = now_ms()
        for row in rows:
            if row["id"] in self._claimed:
                continue
            if row["not_before"] > now:
                return None, (row["not_before"] - now) / 1000
            self._claimed.add(row["id"])
            job = Job(
                row["id"], row["kind"], row["key"], json.loads(row["payload"]), row["attempts"] + 1
            )
            return job, 0.0
        return None, 60.0

    async def _work(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                job, wait = await self._next()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the job queue failed; trying again")
                job, wait = None, FIRST_RETRY_SECONDS
            if job is None:
                # Not asyncio.wait_for: on Python 3.11 it drops a cancellation (stop)
                # that arrives as the wake-up does, and the worker would run on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database, not the handler: the job stays queued
                log.exception("running a job failed; it stays queued", job_id=job.id)
                await asyncio.sleep(FIRST_RETRY_SECONDS)
            finally:
                self._claimed.discard(job.id)
                self._wake.set()  # another worker may have found nothing while it ran

    async def _run(self, job: Job) -> None:
        plugin, handler = self.handlers.get(job.kind, ("?", None))
        bound = log.bind(job_id=job.id, kind=job.kind, key=job.key, plugin=plugin)
        # Counting the try is also taking the job: a worker whose read of the queue
        # predates another worker's start (or end) of this job finds nothing to take.
        taken = await self.db.fetchval(
            "UPDATE job SET attempts = $2 WHERE id = $1 AND attempts = $3 "
            "AND state = 'queued' RETURNING id",
            job.id,
            job.attempt,
            job.attempt - 1,
        )
        if taken is None:
            return
        if handler is None:
            await self._failed(job, bound, "no enabled plugin handles this kind of job")
            return
        try:
            await handler(job)
        except asyncio.CancelledError:
            raise  # stopping: it runs again at the next start
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if job.attempt >= MAX_ATTEMPTS:
                bound.exception("job failed for good")
                await self._failed(job, bound, error)
                return
            delay = retry_delay(job.attempt)
            bound.warning("job failed; will retry", error=error, retry_in=delay)
            metrics.JOBS.labels(job.kind, "retried").inc()
            await self.db.execute(
                "UPDATE job SET not_before = $2, last_error = $3 WHERE id = $1",
                job.id,
                now_ms() + int(delay * 1000),
                error,
            )
            return
        await self.db.execute("DELETE FROM job WHERE id = $1", job.id)
        metrics.JOBS.labels(job.kind, "done").inc()

    async def _failed(self, job: Job, bound: Any, error: str) -> None:
        """Kept for the operator (state ``failed``), not deleted."""
        await self.db.execute(
            "UPDATE job SET state = 'failed', last_error = $2 WHERE id = $1", job.id, error
        )
        metrics.JOBS.labels(job.kind, "failed").inc()
        bound.error("job kept as failed", error=error, attempts=job.attempt)
