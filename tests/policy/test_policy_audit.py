"""The audit log stores every decision (with dry-run verdicts) on SQLite and PostgreSQL,
and in memory for tests."""

from __future__ import annotations

import contextlib

import pytest
import pytest_asyncio

from anywhere.bridge.testing.fixtures import postgres_database
from anywhere.policy import Engine, Request
from anywhere.policy.audit import (
    MIGRATION_COMPONENT,
    MIGRATION_STEPS,
    AuditEntry,
    AuditLog,
    MemoryAuditLog,
    parse_since,
)
from anywhere.storage import Migrations, open_database, run_migrations

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


@pytest.mark.asyncio(loop_scope="function")
async def test_since_filters_and_module_entries_are_stored_once_with_their_source(audit):
    engine = make_engine(start=1_700_000_000.0)
    for _ in range(3):
        decision = engine.evaluate(Request("@kim:example.org", "call.place", facts=FACTS))
        await audit.record(Request("@kim:example.org", "call.place", facts=FACTS), decision)
    assert len(await audit.recent(since=1_700_000_001.0)) == 2
    if isinstance(audit, MemoryAuditLog):
        return
    entry = (await audit.recent(limit=1))[0]
    data = entry.to_json()
    data["decision_id"] = "from-synapse-1"
    data["request"] = {**data["request"], "context": {"source": "synapse"}}
    module_entry = AuditEntry.from_json(data)
    assert await audit.record_entry(module_entry) is True
    assert await audit.record_entry(module_entry) is False  # an exchange sent again
    stored = await audit.get("from-synapse-1")
    assert stored.source == "synapse" and entry.source == "bridge"
    assert "DENY call.place by @kim:example.org (synapse) kr-plan" in stored.line()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", 1_000_000.0 - 1800),
        ("12h", 1_000_000.0 - 43200),
        ("7d", 1_000_000.0 - 7 * 86400),
        ("2026-12-01", 1_796_083_200.0),
        ("2026-12-01T18:00", 1_796_148_000.0),
        ("2026-12-01T18:00:30Z", 1_796_148_030.0),
    ],
)
def test_since_is_relative_or_a_utc_time(text, expected):
    assert parse_since(text, now=1_000_000.0) == expected


def test_a_bad_since_says_what_to_write():
    with pytest.raises(ValueError, match="write 30m, 12h or 7d"):
        parse_since("yesterday", now=0)
