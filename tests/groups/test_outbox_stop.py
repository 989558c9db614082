"""The groups outbox's worker stops when the hub stops, even as it is woken."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import structlog

from anywhere.plugins.groups.outbox import Outbox
from anywhere.storage import open_database


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("turns", [0, 1, 2])
async def test_the_outbox_worker_stops_as_it_is_woken(tmp_path, turns):
    """The worker waits to retry (here: its database has no outbox table) when the
    network comes back just as the hub stops it. With asyncio.wait_for (Python 3.11)
    the cancellation was dropped after 0 or 1 turns of the loop and the worker ran on,
    so the hub's stop waited forever."""
    db = await open_database(f"sqlite:{tmp_path / 'outbox.db'}")
    outbox = Outbox(
        SimpleNamespace(db=db),
        None,
        {},
        None,
        lambda room_id: None,
        structlog.get_logger("test.outbox"),
    )
    try:
        with structlog.testing.capture_logs() as logs:
            worker = asyncio.create_task(outbox.run("xmpp"))
            async with asyncio.timeout(10):
                while not any(
                    entry["event"].startswith("the outbox worker stumbled") for entry in logs
                ):
                    await asyncio.sleep(0.01)
        # it logged, then (in the same step) began waiting to retry
        outbox.wake("xmpp")
        for _ in range(turns):
            await asyncio.sleep(0)
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=5)
        assert done, "the outbox worker did not stop when cancelled as it was woken"
    finally:
        worker.cancel()
        await db.stop()
