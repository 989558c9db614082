"""Durable background jobs (bridge/jobs.py), on SQLite and PostgreSQL: enqueued once per
key, run beside the event worker, retried when they raise, kept as failed when they keep
failing, and run again after a restart cut them off."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import pytest_asyncio
import structlog

from anywhere.bridge import hookimpl
from anywhere.bridge import jobs as jobs_module
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.jobs import Jobs, collect_job_handlers
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.schema import CORE_MIGRATIONS
from anywhere.storage import open_database, run_migrations


@pytest_asyncio.fixture(loop_scope="function")
async def db(anywhere_database_url):
    database = await open_database(anywhere_database_url)
    await run_migrations(database, [CORE_MIGRATIONS])
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(jobs_module, "FIRST_RETRY_SECONDS", 0.05)


async def until(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time allowed")


def queue(db, handlers) -> Jobs:
    return Jobs(db, {kind: ("test", handler) for kind, handler in handlers.items()})


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_runs_once_per_key_and_leaves_nothing_behind(db):
    seen = []

    async def save(job):
        seen.append((job.payload, job.attempt))

    jobs = queue(db, {"test.save": save})
    assert await jobs.enqueue("test.save", {"file": "a.pdf"}, key="save:$event1")
    assert not await jobs.enqueue("test.save", {"file": "a.pdf"}, key="save:$event1")
    jobs.start()
    try:
        await until(lambda: _done(db))
        assert seen == [({"file": "a.pdf"}, 1)]
        with pytest.raises(ValueError, match="no plugin handles jobs of kind 'test.nope'"):
            await jobs.enqueue("test.nope", {}, key="x")
    finally:
        await jobs.stop()


async def _done(db) -> bool:
    return await db.fetchval("SELECT COUNT(*) FROM job") == 0


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_that_raises_is_tried_again_later(db):
    attempts = []

    async def flaky(job):
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise ConnectionError("the homeserver is restarting")

    jobs = queue(db, {"test.flaky": flaky})
    jobs.start()
    try:
        await jobs.enqueue("test.flaky", {}, key="flaky")
        await until(lambda: _done(db))
        assert attempts == [1, 2, 3]
    finally:
        await jobs.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_that_keeps_failing_is_kept_as_failed_not_dropped(db, monkeypatch):
    monkeypatch.setattr(jobs_module, "MAX_ATTEMPTS", 2)

    cured = []

    async def broken(job):
        if not cured:
            raise RuntimeError("this file is cursed")

    jobs = queue(db, {"test.broken": broken})
    jobs.start()
    try:
        await jobs.enqueue("test.broken", {"n": 1}, key="cursed")

        async def failed():
            return await db.fetchval("SELECT state FROM job WHERE key = 'cursed'") == "failed"

        await until(failed)
        row = await db.fetchrow("SELECT attempts, last_error FROM job WHERE key = 'cursed'")
        assert (row["attempts"], row["last_error"]) == (2, "RuntimeError: this file is cursed")
        assert await jobs.waiting() == 0
        assert not await jobs.enqueue("test.broken", {"n": 1}, key="cursed")  # still kept
        [failed_job] = await jobs.failed()
        assert (failed_job["kind"], failed_job["key"]) == ("test.broken", "cursed")

        cured.append(True)  # the operator fixed the cause: !jobs retry
        assert await jobs.retry(failed_job["id"] + 1) == 0
        assert await jobs.retry(failed_job["id"]) == 1
        await until(lambda: _done(db))
        assert await jobs.failed() == []
    finally:
        await jobs.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_cut_off_by_a_stop_runs_again_at_the_next_start(db):
    started, release, runs = asyncio.Event(), asyncio.Event(), []

    async def slow(job):
        runs.append(job.attempt)
        started.set()
        await release.wait()

    first = queue(db, {"test.slow": slow})
    first.start()
    await first.enqueue("test.slow", {}, key="slow")
    await asyncio.wait_for(started.wait(), 5)
    await first.stop()  # the bridge stops (or dies) in the middle of the job
    assert await first.waiting() == 1

    release.set()
    second = queue(db, {"test.slow": slow})
    second.start()
    try:
        await until(lambda: _done(db))
        assert runs == [1, 2]
    finally:
        await second.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_slow_jobs_run_side_by_side_and_do_not_hold_up_quick_ones(db):
    release, order = asyncio.Event(), []

    async def slow(job):
        await release.wait()
        order.append("slow")

    async def quick(job):
        order.append("quick")

    jobs = queue(db, {"test.slow": slow, "test.quick": quick})
    jobs.start()
    try:
        await jobs.enqueue("test.slow", {}, key="big-file")
        await jobs.enqueue("test.quick", {}, key="small-file")

        async def quick_done():
            return order == ["quick"]

        await until(quick_done)
        release.set()
        await until(lambda: _done(db))
        assert order == ["quick", "slow"]
    finally:
        await jobs.stop()


class Saver:
    @hookimpl
    def anywhere_job_handlers(self):
        async def save(job):
            pass

        return {"drive.save_from_chat": save}


def test_a_kind_two_plugins_handle_stops_start_up_naming_both():
    plugins = PluginManager()
    plugins.register(Saver(), "drive")
    plugins.register(Saver(), "copycat")
    with pytest.raises(PluginLoadError, match="the job kind 'drive.save_from_chat'") as caught:
        collect_job_handlers(plugins)
    assert "'drive'" in str(caught.value) and "'copycat'" in str(caught.value)


@pytest.mark.asyncio(loop_scope="function")
async def test_a_database_hiccup_while_running_a_job_leaves_it_queued_and_the_worker_alive(
    db, monkeypatch
):
    runs = []

    async def save(job):
        runs.append(job.attempt)

    jobs = queue(db, {"test.save": save})
    real_fetchval, failures = db.fetchval, [1]

    async def flaky_fetchval(query, *args):
        if query.startswith("UPDATE job SET attempts") and failures:
            failures.pop()
            raise ConnectionError("the database went away for a moment")
        return await real_fetchval(query, *args)

    monkeypatch.setattr(db, "fetchval", flaky_fetchval)
    jobs.start(workers=1)
    try:
        await jobs.enqueue("test.save", {}, key="hiccup")
        await until(lambda: _done(db))
        assert runs == [1] and jobs.running
    finally:
        await jobs.stop()


class HeldReads:
    """The database, except that the next read of the job queue can be held back after
    it was made: the worker that made it acts on an old view of the queue while another
    worker runs the job."""

    def __init__(self, db) -> None:
        self.db = db
        self.read = asyncio.Event()
        self.release = asyncio.Event()
        self.holding = False

    def __getattr__(self, name):
        return getattr(self.db, name)

    async def fetch(self, query, *args):
        rows = await self.db.fetch(query, *args)
        if self.holding and "FROM job" in query and "state = 'queued'" in query:
            self.holding = False
            self.read.set()
            await self.release.wait()
        return rows


@pytest.mark.asyncio(loop_scope="function")
async def test_workers_with_an_old_view_of_the_queue_do_not_run_a_job_twice(db):
    """Worker B reads the queue; worker A then takes the job, which fails and is put
    back for later; B, acting on its old view, must not run it again at once."""
    runs = []

    async def save(job):
        runs.append(job.attempt)
        raise OSError("the disk is full")

    held = HeldReads(db)
    jobs = queue(held, {"test.save": save})
    await jobs.enqueue("test.save", {}, key="file-1")
    held.holding = True
    worker_b = asyncio.create_task(jobs._next())
    await held.read.wait()  # B has read the queue: the job, not tried yet

    job, _ = await jobs._next()  # worker A
    await jobs._run(job)
    jobs._claimed.discard(job.id)  # as a worker does when it is done
    assert runs == [1]
    row = await db.fetchrow("SELECT state, attempts, not_before FROM job")
    assert (row["state"], row["attempts"]) == ("queued", 1)  # back, for later

    held.release.set()
    stale, _ = await worker_b
    assert stale is not None and stale.id == job.id and stale.attempt == 1  # the old view
    await jobs._run(stale)
    assert runs == [1]  # not run again by B
    assert await db.fetchval("SELECT attempts FROM job") == 1


async def _nothing(job):
    pass


async def stop_within(jobs: Jobs, seconds: float) -> None:
    """``jobs.stop()``, failing the test (not hanging it) if it does not return in time."""
    stopping = asyncio.create_task(jobs.stop())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    if not done:
        raise AssertionError(f"Jobs.stop did not return within {seconds} s")
    stopping.result()


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("turns", [0, 1, 2])
async def test_a_stop_as_idle_workers_are_woken_ends_them(db, turns):
    """The bridge stops just as a job is queued (or another worker finished one): the
    idle workers are being woken when they are cancelled. With asyncio.wait_for (Python
    3.11) the cancellation was dropped after 0 or 1 turns of the loop and the worker
    waited on, so stop never returned (the plugin kit's teardown hung)."""
    jobs = queue(db, {"test.save": _nothing})
    jobs.start()
    workers = list(jobs._workers)

    async def all_idle():
        return len(jobs._wake._waiters) == len(workers)

    await until(all_idle)
    await jobs.enqueue("test.save", {}, key="late")  # wakes them, with no turn in between
    for _ in range(turns):
        await asyncio.sleep(0)
    await stop_within(jobs, jobs_module.STOP_SECONDS / 2)
    assert all(task.done() for task in workers)
    assert await jobs.waiting() == 1  # queued still: it runs at the next start


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_that_swallows_its_cancellation_does_not_keep_the_worker(db):
    started = asyncio.Event()

    async def stubborn(job):
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # until cancelled; then it returns

    jobs = queue(db, {"test.stubborn": stubborn})
    jobs.start(workers=1)
    workers = list(jobs._workers)
    await jobs.enqueue("test.stubborn", {}, key="stubborn")
    await asyncio.wait_for(started.wait(), 5)
    await stop_within(jobs, jobs_module.STOP_SECONDS / 2)
    assert workers[0].done()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_that_will_not_stop_is_left_behind_with_an_error(db, monkeypatch):
    monkeypatch.setattr(jobs_module, "STOP_SECONDS", 0.5)
    started, release = asyncio.Event(), asyncio.Event()

    async def deaf(job):
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    jobs = queue(db, {"test.deaf": deaf})
    jobs.start(workers=1)
    workers = list(jobs._workers)
    await jobs.enqueue("test.deaf", {}, key="deaf")
    await asyncio.wait_for(started.wait(), 5)
    try:
        with structlog.testing.capture_logs() as logs:
            await stop_within(jobs, 5)
        [left] = [entry for entry in logs if entry["event"].startswith("job workers did not stop")]
        assert left["log_level"] == "error" and left["workers"] == ["anywhere-job-0"]
        assert len(left["running_jobs"]) == 1
        assert not workers[0].done()
    finally:
        release.set()
        await asyncio.wait_for(workers[0], 5)
