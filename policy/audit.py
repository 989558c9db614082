"""The audit log: one row per decision, written after the engine decided.

Writing is kept out of :meth:`policy.Engine.evaluate` (which stays pure); the caller
does ``decision = engine.evaluate(request)`` then ``await audit.record(request,
decision)``. Dry-run verdicts are stored in their own column, so an operator can see
what a rule under trial would have done.

The table is created by :func:`upgrade_v1`, a migration step for the ``policy``
component (``Migrations("policy", MIGRATION_STEPS)``); queries use mautrix's
``$1``-style parameters, which work on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from calendar import timegm as calendar_timegm
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Decision, Request, jsonable

if TYPE_CHECKING:
    from mautrix.util.async_db import Database, Scheme
    from mautrix.util.async_db.connection import LoggingConnection

MIGRATION_COMPONENT = "policy"


async def upgrade_v1(conn: LoggingConnection, scheme: Scheme) -> None:
    """Create policy_audit: one row per policy decision"""
    await conn.execute(
        """
        CREATE TABLE policy_audit (
            decision_id      TEXT PRIMARY KEY,
            decided_at       BIGINT NOT NULL,
            ruleset_version  TEXT NOT NULL,
            actor            TEXT NOT NULL,
            action           TEXT NOT NULL,
            target           TEXT,
            room_id          TEXT,
            outcome          TEXT NOT NULL,
            rule_id          TEXT,
            code             TEXT NOT NULL,
            reason           TEXT NOT NULL,
            request          TEXT NOT NULL,
            verdicts         TEXT NOT NULL,
            dry_run_verdicts TEXT NOT NULL
        )
        """
    )
    await conn.execute("CREATE INDEX policy_audit_actor_idx ON policy_audit (actor, decided_at)")
    await conn.execute("CREATE INDEX policy_audit_time_idx ON policy_audit (decided_at)")


MIGRATION_STEPS = (upgrade_v1,)
"""``decided_at`` is Unix time in milliseconds; ``request``, ``verdicts`` and
``dry_run_verdicts`` are JSON (see :meth:`AuditEntry.from_decision`)."""

_COLUMNS = (
    "decision_id, decided_at, ruleset_version, actor, action, target, room_id, outcome, "
    "rule_id, code, reason, request, verdicts, dry_run_verdicts"
)


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class AuditEntry:
    """One audited decision, as stored."""

    decision_id: str
    decided_at_ms: int
    ruleset_version: str
    actor: str
    action: str
    target: str | None
    room_id: str | None
    outcome: str
    rule_id: str | None
    code: str
    reason: str
    request: Mapping[str, Any]
    verdicts: tuple[Mapping[str, Any], ...]
    dry_run_verdicts: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_decision(cls, request: Request, decision: Decision) -> AuditEntry:
        verdicts = tuple(v.to_dict() for v in decision.verdicts)
        return cls(
            decision_id=decision.decision_id,
            decided_at_ms=round(decision.decided_at * 1000),
            ruleset_version=decision.ruleset_version,
            actor=request.actor,
            action=request.action,
            target=request.target,
            room_id=request.room_id,
            outcome=str(decision.outcome),
            rule_id=decision.rule_id,
            code=decision.code,
            reason=decision.reason,
            request=request.to_dict(),
            verdicts=verdicts,
            dry_run_verdicts=tuple(v for v in verdicts if v["dry_run"]),
        )

    @property
    def source(self) -> str:
        """Who decided: ``synapse`` (the homeserver module) or ``bridge``."""
        context = self.request.get("context") if isinstance(self.request, Mapping) else None
        source = context.get("source") if isinstance(context, Mapping) else None
        return source if isinstance(source, str) else "bridge"

    def line(self) -> str:
        """One line for a chat message: time, outcome, action, who, where, rule, id."""
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.decided_at_ms / 1000))
        rule = f"{self.rule_id} " if self.rule_id else ""
        dry = f" (dry-run: {len(self.dry_run_verdicts)})" if self.dry_run_verdicts else ""
        return (
            f"{when} {self.outcome.upper()} {self.action} by {self.actor} ({self.source}) "
            f"{rule}[{self.code}] {self.decision_id}{dry}"
        )

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data (the Synapse module sends its decisions so)."""
        return jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """The inverse of :meth:`to_json`; raises ValueError when ``data`` is not one."""
        try:
            values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an audit entry: missing {exc}") from None
        for name in ("decision_id", "ruleset_version", "actor", "action", "outcome", "code"):
            if not isinstance(values[name], str):
                raise ValueError(f"not an audit entry: {name} is not a string")
        if not isinstance(values["decided_at_ms"], int):
            raise ValueError("not an audit entry: decided_at_ms is not an integer")
        values["verdicts"] = tuple(values["verdicts"] or ())
        values["dry_run_verdicts"] = tuple(values["dry_run_verdicts"] or ())
        return cls(**values)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEntry:
        return cls(
            decision_id=row["decision_id"],
            decided_at_ms=int(row["decided_at"]),
            ruleset_version=row["ruleset_version"],
            actor=row["actor"],
            action=row["action"],
            target=row["target"],
            room_id=row["room_id"],
            outcome=row["outcome"],
            rule_id=row["rule_id"],
            code=row["code"],
            reason=row["reason"],
            request=json.loads(row["request"]),
            verdicts=tuple(json.loads(row["verdicts"])),
            dry_run_verdicts=tuple(json.loads(row["dry_run_verdicts"])),
        )

    def row(self) -> tuple[Any, ...]:
        return (
            self.decision_id,
            self.decided_at_ms,
            self.ruleset_version,
            self.actor,
            self.action,
            self.target,
            self.room_id,
            self.outcome,
            self.rule_id,
            self.code,
            self.reason,
            _dumps(self.request),
            _dumps(self.verdicts),
            _dumps(self.dry_run_verdicts),
        )


class AuditLog:
    """Decisions in the ``policy_audit`` table of the bridge database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, request: Request, decision: Decision) -> AuditEntry:
        entry = AuditEntry.from_decision(request, decision)
        await self.db.execute(
            f"INSERT INTO policy_audit ({_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            *entry.row(),
        )
        return entry

    async def record_entry(self, entry: AuditEntry) -> bool:
        """Store an entry made elsewhere (the Synapse module's decisions); an entry
        already stored (the same exchange sent again) is skipped. True when stored."""
        if await self.db.fetchval(
            "SELECT 1 FROM policy_audit WHERE decision_id = $1", entry.decision_id
        ):
            return False
        await self.db.execute(
            f"INSERT INTO policy_audit ({_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            *entry.row(),
        )
        return True

    async def get(self, decision_id: str) -> AuditEntry | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM policy_audit WHERE decision_id = $1", decision_id
        )
        return AuditEntry.from_row(row) if row is not None else None

    async def recent(
        self, *, actor: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[AuditEntry]:
        """The latest decisions, newest first; only ``actor``'s when given, only those made
        at or after the Unix time ``since`` when given."""
        since_ms = round(since * 1000) if since is not None else 0
        if actor is None:
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM policy_audit WHERE decided_at >= $1 "
                "ORDER BY decided_at DESC LIMIT $2",
                since_ms,
                limit,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM policy_audit WHERE actor = $1 AND decided_at >= $2 "
                "ORDER BY decided_at DESC LIMIT $3",
                actor,
                since_ms,
                limit,
            )
        return [AuditEntry.from_row(row) for row in rows]

    async def prune(self, before: float) -> None:
        """Delete decisions made before the Unix time ``before`` (retention)."""
        await self.db.execute(
            "DELETE FROM policy_audit WHERE decided_at < $1", round(before * 1000)
        )


class MemoryAuditLog:
    """The same interface kept in a list, for tests and for running without a database."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, request: Request, decision: Decision) -> AuditEntry:
        entry = AuditEntry.from_decision(request, decision)
        if any(e.decision_id == entry.decision_id for e in self.entries):
            raise ValueError(f"decision {entry.decision_id} is already in the audit log")
        self.entries.append(entry)
        return entry

    async def get(self, decision_id: str) -> AuditEntry | None:
        return next((e for e in self.entries if e.decision_id == decision_id), None)

    async def recent(
        self, *, actor: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[AuditEntry]:
        cutoff = round(since * 1000) if since is not None else 0
        found = [
            e
            for e in self.entries
            if (actor is None or e.actor == actor) and e.decided_at_ms >= cutoff
        ]
        return sorted(found, key=lambda e: e.decided_at_ms, reverse=True)[:limit]

    async def prune(self, before: float) -> None:
        cutoff = round(before * 1000)
        self.entries = [e for e in self.entries if e.decided_at_ms >= cutoff]


_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``since`` for audit queries: ``30m``, ``12h``, ``7d`` (ago), or a UTC date or time
    (``2026-12-01``, ``2026-12-01T18:00``, ``...Z``). Raises ValueError saying what to
    write."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        return now - int(relative[1]) * _UNITS[relative[2]]
    for layout in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            parsed = time.strptime(value.removesuffix("Z"), layout)
        except ValueError:
            continue
        return float(calendar_timegm(parsed))
    raise ValueError(
        f"{text!r} is not a time: write 30m, 12h or 7d (ago), or a UTC date such as "
        "2026-12-01 or 2026-12-01T18:00"
    )
