"""``!policy explain``: a decision as a few lines of plain text for a chat message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .facts import FACTS
from .model import Decision, Request, Verdict, jsonable

if TYPE_CHECKING:
    from .ruleset import RuleSet

_FACT_ORDER = {fact.name: index for index, fact in enumerate(FACTS)}


def format_facts(facts: dict[str, Any] | Any) -> str:
    if not facts:
        return "none"
    names = sorted(facts, key=lambda n: (_FACT_ORDER.get(n, len(_FACT_ORDER)), n))
    parts = []
    for name in names:
        value = jsonable(facts[name])
        if isinstance(value, list):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def format_verdict(verdict: Verdict) -> str:
    outcome = "no opinion" if verdict.outcome is None else verdict.outcome.upper()
    if verdict.dry_run:
        outcome = f"would {outcome}" if verdict.outcome is not None else outcome
    text = f"{outcome} [{verdict.code}] {verdict.reason}"
    if verdict.vetoed_by is not None:
        text += f" (vetoed by {verdict.vetoed_by})"
    return text


def format_explanation(request: Request, ruleset: RuleSet, decision: Decision) -> str:
    where = f" in {request.room_id}" if request.room_id else ""
    target = f" on {request.target}" if request.target else ""
    lines = [
        f"Policy for {request.action}{target} by {request.actor}{where} "
        f"(rule set {ruleset.version})",
        f"Facts: {format_facts(request.facts)}",
        "Rules:",
    ]
    by_rule = {v.rule_id: v for v in decision.verdicts}
    not_covering = []
    number = 0
    for rule in ruleset.rules:
        if not rule.applies_to(request.action):
            not_covering.append(rule.id)
            continue
        number += 1
        verdict = by_rule.get(rule.id)
        if verdict is not None:
            text = format_verdict(verdict)
        else:
            mismatch = rule.scope.mismatch(request)
            text = f"out of scope: {mismatch}" if mismatch else "not applicable"
        lines.append(f"  {number}. {rule.describe()}: {text}")
    if number == 0:
        lines.append("  (no rule covers this action)")
    if not_covering:
        lines.append(f"  Not covering {request.action}: {', '.join(not_covering)}")
    by = f" by {decision.rule_id}" if decision.rule_id else ""
    lines.append(f"Decision: {decision.outcome.upper()}{by} [{decision.code}] {decision.reason}")
    if decision.obligations:
        lines.append(f"Obligations: {format_facts(dict(decision.obligations))}")
    lines.append(f"Decision id: {decision.decision_id}")
    return "\n".join(lines)
