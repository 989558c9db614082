"""The audit log stores every decision (with dry-run verdicts) on SQLite and PostgreSQL,
and in memory for tests."""

from __future__ import annotations

import contextlib

import pytest
import pytest_asyncio

from bridge.testing.fixtures import postgres_database
from policy import Engine, Request
from policy.audit import MIGRATION_COMPONENT, MIGRATION_STEPS, AuditLog, MemoryAuditLog
from storage import Migrations, open_database, run_migrations

RULES = [
    {"type": "plan_threshold", "id": "kr-plan"},
    {"type": "mvoip_quota", "id": "quota", "monthly_mb": 100, "mode": "dry-run"},
]
FACTS = {"carrier": "SKT", "network": "3g", "plan_price": 45000, "verified_methods": {"email"}}


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgres"], loop_scope="function")
async def audit(request, tmp_path):
    if request.param == "memory":
        yield MemoryAuditLog()
        return
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:{tmp_path / 'audit.db'}"
        else:
            url = await stack.enter_async_context(postgres_database())
        db = await open_database(url)
        try:
            await run_migrations(db, [Migrations(MIGRATION_COMPONENT, MIGRATION_STEPS)])
            yield AuditLog(db)
        finally:
            await db.stop()


def make_engine(start: float = 1_700_000_000.0) -> Engine:
    times = iter(start + i for i in range(1000))
    return Engine.from_config(RULES, clock=lambda: next(times))


@pytest.mark.asyncio(loop_scope="function")
async def test_a_decision_is_stored_with_request_rule_and_dry_run_verdicts(audit):
    engine = make_engine()
    request = Request(
        "@kim:example.org",
        "call.place",
        "@lee:example.org",
        room_id="!dm:example.org",
        context={"event_id": "$e"},
        facts=FACTS,
    )
    decision = engine.evaluate(request)
    await audit.record(request, decision)

    entry = await audit.get(decision.decision_id)
    assert entry is not None
    assert (entry.outcome, entry.rule_id, entry.code) == (
        "deny",
        "kr-plan",
        "plan_below_mvoip_threshold",
    )
    assert entry.ruleset_version == engine.ruleset.version
    assert entry.decided_at_ms == 1_700_000_000_000
    assert (entry.actor, entry.action, entry.target, entry.room_id) == (
        "@kim:example.org",
        "call.place",
        "@lee:example.org",
        "!dm:example.org",
    )
    assert entry.request["facts"]["verified_methods"] == ["email"]
    assert entry.request["context"] == {"event_id": "$e"}
    assert [v["rule_id"] for v in entry.verdicts] == ["kr-plan", "quota"]
    (trial,) = entry.dry_run_verdicts
    assert (trial["rule_id"], trial["outcome"], trial["dry_run"]) == ("quota", "allow", True)
    assert trial["obligations"] == {"mvoip_remaining_mb": 100, "mvoip_remaining_minutes": 228.0}


@pytest.mark.asyncio(loop_scope="function")
async def test_recent_is_newest_first_per_actor_and_prune_deletes_old(audit):
    engine = make_engine()
    for actor in ("@a:x", "@b:x", "@a:x"):
        request = Request(actor, "call.place", facts=FACTS)
        await audit.record(request, engine.evaluate(request))
    recent = await audit.recent(actor="@a:x")
    assert [e.decided_at_ms for e in recent] == [1_700_000_002_000, 1_700_000_000_000]
    assert len(await audit.recent(limit=2)) == 2
    await audit.prune(before=1_700_000_001.5)
    assert [e.actor for e in await audit.recent()] == ["@a:x"]


@pytest.mark.asyncio(loop_scope="function")
async def test_unknown_decision_id_is_none(audit):
    assert await audit.get("nope") is None
