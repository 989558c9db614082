"""The values the policy engine works with: a request, each rule's verdict, the decision.

All three are frozen: a decision can be handed to the audit log, a chat message and a
Synapse module without anyone changing it underneath the others.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, Any] = MappingProxyType({})
"""The shared empty mapping used as the default for context, facts and obligations."""


def _empty() -> Mapping[str, Any]:
    return EMPTY


class Outcome(enum.StrEnum):
    """What a rule (or the engine) says about a request."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_VERIFICATION = "require_verification"


ALLOW = Outcome.ALLOW
DENY = Outcome.DENY
REQUIRE_VERIFICATION = Outcome.REQUIRE_VERIFICATION


@dataclass(frozen=True, slots=True)
class Request:
    """Who wants to do what, where, and the facts gathered for it beforehand.

    ``actor`` is a Matrix user id, ``action`` a dotted name (see :mod:`anywhere.policy.actions`),
    ``target`` what the action is on (a callee, a folder, an invitee), ``context`` free
    details from the caller (event id, command) and ``facts`` what the fact providers
    found out (names in :mod:`anywhere.policy.facts`). Rules read facts only from here.
    """

    actor: str
    action: str
    target: str | None = None
    room_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=_empty)
    facts: Mapping[str, Any] = field(default_factory=_empty)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "room_id": self.room_id,
            "context": jsonable(self.context),
            "facts": jsonable(self.facts),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's answer to one request.

    ``outcome`` is None when the rule looked at the request and has no opinion (the
    reason says why, for ``!policy explain``). ``dry_run`` verdicts are recorded but
    never change the decision. ``vetoed_by`` is the id of the regulation rule that
    cancelled this verdict; a vetoed verdict stays in the trace.
    """

    rule_id: str
    rule_type: str
    family: str
    outcome: Outcome | None
    reason: str
    code: str
    obligations: Mapping[str, Any] = field(default_factory=_empty)
    dry_run: bool = False
    vetoed_by: str | None = None

    @property
    def effective(self) -> bool:
        """True when this verdict counts towards the decision."""
        return not self.dry_run and self.vetoed_by is None

    @property
    def restricts(self) -> bool:
        """True for a block (deny, require verification) or a limit (obligations)."""
        return (
            self.outcome is DENY or self.outcome is REQUIRE_VERIFICATION or bool(self.obligations)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_type": self.rule_type,
            "family": self.family,
            "outcome": None if self.outcome is None else str(self.outcome),
            "reason": self.reason,
            "code": self.code,
            "obligations": jsonable(self.obligations),
            "dry_run": self.dry_run,
            "vetoed_by": self.vetoed_by,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer: the outcome, the rule that decided it and why.

    ``rule_id`` is None only when no rule had an opinion (code ``no_rule``).
    ``obligations`` are conditions the caller must apply when acting on an allow (for
    example ``mvoip_remaining_mb`` for a call). ``verdicts`` is the full trace in rule
    order, dry-run and vetoed verdicts included. ``decided_at`` is a Unix timestamp.
    """

    outcome: Outcome
    rule_id: str | None
    reason: str
    code: str
    obligations: Mapping[str, Any]
    verdicts: tuple[Verdict, ...]
    decision_id: str
    ruleset_version: str
    decided_at: float

    @property
    def allowed(self) -> bool:
        return self.outcome is ALLOW

    @property
    def dry_run_verdicts(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.dry_run)

    @property
    def vetoed_verdicts(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.vetoed_by is not None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``decided_at`` as ISO 8601 UTC) for the audit log and APIs."""
        return {
            "decision_id": self.decision_id,
            "decided_at": iso_time(self.decided_at),
            "ruleset_version": self.ruleset_version,
            "outcome": str(self.outcome),
            "allowed": self.allowed,
            "rule_id": self.rule_id,
            "reason": self.reason,
            "code": self.code,
            "obligations": jsonable(self.obligations),
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def jsonable(value: Any) -> Any:
    """``value`` with mappings as dicts, sets as sorted lists and enums as their values."""
    if value is None or isinstance(value, bool | int | float | str):
        return str(value) if isinstance(value, enum.Enum) else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
