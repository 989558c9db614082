"""The policy engine: evaluates a request against the rule set and combines the verdicts.

The combining rule
------------------

1. The rules that cover the request's action are evaluated in config order; a rule
   whose scope (users, rooms, public institution) does not match is skipped. Each
   answers allow, deny, require_verification, "no opinion" or nothing. A rule that
   raises is recorded as a deny with code ``rule_error`` (fail closed).
2. **Vetoes.** A rule with ``vetoes`` (the regulation rules) that answers allow in
   enforce mode cancels every *restricting* verdict — a deny, a require_verification,
   or an allow with obligations (a limit) — of the families it vetoes (carrier rules),
   whatever their position. Cancelled verdicts stay in the trace with ``vetoed_by``.
3. **Dry-run** verdicts are recorded (and audited) but never count.
4. Of the verdicts that count: the first **deny** decides; else the first
   **require_verification**; else the outcome is **allow**. Deny comes before
   verification because asking someone to verify and then refusing them anyway would
   waste their effort.
5. An allow is attributed to the first allow verdict, or — when a restriction was
   vetoed — to the veto rule, with code ``<family>_block_vetoed`` (or
   ``<family>_limit_vetoed``) and a reason that says what was vetoed and by what. With
   no opinion at all, the decision is allow with ``rule_id`` None and code ``no_rule``.
6. Obligations: a deny or require_verification carries its own verdict's; an allow
   carries those of every allow verdict that counts, merged in rule order (the first
   rule to set a key wins).

``evaluate`` does no I/O and writes no audit: the caller gathers facts before and
records the decision after (:mod:`anywhere.policy.audit`).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .explain import format_explanation
from .model import ALLOW, DENY, EMPTY, REQUIRE_VERIFICATION, Decision, Outcome, Request, Verdict
from .rules import Rule
from .ruleset import Plan, RuleSet, load_ruleset

__all__ = ["Engine", "RuleSet", "load_ruleset"]

NO_RULE_REASON = "No policy rule applies."


class Engine:
    """Holds the rule set in force and answers requests with decisions.

    Reloading swaps the rule set in one assignment, so a decision in progress on
    another thread finishes with the rule set it started with.
    """

    def __init__(
        self,
        ruleset: RuleSet | None = None,
        *,
        extra_types: Mapping[str, type[Rule]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ruleset = ruleset if ruleset is not None else RuleSet((), "empty")
        self._extra_types = dict(extra_types or {})
        self._clock = clock
        # Decision ids: a random per-process prefix and a counter — unique without
        # the cost of a uuid per decision.
        self._id_prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    @classmethod
    def from_config(
        cls,
        config: Sequence[Mapping[str, Any]] | None,
        *,
        extra_types: Mapping[str, type[Rule]] | None = None,
        key: str = "policy.rules",
        clock: Callable[[], float] = time.time,
    ) -> Engine:
        ruleset = load_ruleset(config, extra_types=extra_types, key=key)
        return cls(ruleset, extra_types=extra_types, clock=clock)

    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    def reload(
        self,
        config: Sequence[Mapping[str, Any]] | None,
        *,
        extra_types: Mapping[str, type[Rule]] | None = None,
        key: str = "policy.rules",
        version: str | None = None,
    ) -> RuleSet:
        """Validate ``config`` and put it in force; returns the new rule set.

        On a :class:`~anywhere.policy.errors.PolicyConfigError` the old rule set stays in force
        and the error propagates, so the caller can tell the operator what to fix.
        ``extra_types`` defaults to the plugin types given before.
        """
        types = self._extra_types if extra_types is None else dict(extra_types)
        ruleset = load_ruleset(config, extra_types=types, key=key, version=version)
        self._extra_types = types
        self._ruleset = ruleset
        return ruleset

    def evaluate(self, request: Request) -> Decision:
        """Decide ``request`` (see the module docstring for how verdicts combine)."""
        ruleset = self._ruleset
        plan = ruleset.plan(request.action)
        verdicts: list[Verdict] = []
        for rule, scope in plan.entries:
            if scope is not None and not scope.matches(request):
                continue
            try:
                verdict = rule.evaluate(request)
            except Exception as exc:
                verdict = rule.failed(exc)
            if verdict is not None:
                verdicts.append(verdict)
        return self._decide(verdicts, plan, ruleset.version)

    def decision_without_rules(self, outcome: Outcome, reason: str, code: str) -> Decision:
        """A decision no rule made (the rules could not be applied: facts unavailable,
        no valid rules), with an id and the rule set's version like any other."""
        return self._decision(outcome, None, reason, code, EMPTY, [], self._ruleset.version)

    def explain(self, request: Request) -> str:
        """A short multi-line text for a chat message: the facts, each rule's verdict
        and the decision."""
        ruleset = self._ruleset
        return format_explanation(request, ruleset, self.evaluate(request))

    def _decide(self, verdicts: list[Verdict], plan: Plan, version: str) -> Decision:
        vetoed: list[Verdict] = []
        if plan.veto_families:
            vetoed = _apply_vetoes(verdicts, plan.veto_families)
        deny = verify = allow = None
        limits: list[Mapping[str, Any]] = []
        for verdict in verdicts:
            if verdict.dry_run or verdict.vetoed_by is not None:
                continue
            outcome = verdict.outcome
            if outcome is DENY:
                if deny is None:
                    deny = verdict
            elif outcome is REQUIRE_VERIFICATION:
                if verify is None:
                    verify = verdict
            elif outcome is ALLOW:
                if allow is None:
                    allow = verdict
                if verdict.obligations:
                    limits.append(verdict.obligations)
        deciding = deny or verify
        if deciding is not None:
            return self._decision(
                deciding.outcome,
                deciding.rule_id,
                deciding.reason,
                deciding.code,
                deciding.obligations,
                verdicts,
                version,
            )
        obligations = _merge(limits)
        if vetoed:
            rule_id, reason, code = _veto_summary(vetoed[0], verdicts)
            return self._decision(ALLOW, rule_id, reason, code, obligations, verdicts, version)
        if allow is not None:
            return self._decision(
                ALLOW, allow.rule_id, allow.reason, allow.code, obligations, verdicts, version
            )
        return self._decision(ALLOW, None, NO_RULE_REASON, "no_rule", EMPTY, verdicts, version)

    def _decision(
        self,
        outcome: Outcome,
        rule_id: str | None,
        reason: str,
        code: str,
        obligations: Mapping[str, Any],
        verdicts: list[Verdict],
        version: str,
    ) -> Decision:
        return Decision(
            outcome=outcome,
            rule_id=rule_id,
            reason=reason,
            code=code,
            obligations=obligations,
            verdicts=tuple(verdicts),
            decision_id=f"{self._id_prefix}-{next(self._counter):x}",
            ruleset_version=version,
            decided_at=self._clock(),
        )


def _merge(obligations: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Obligations of several verdicts in rule order; the first to set a key wins."""
    if not obligations:
        return EMPTY
    if len(obligations) == 1:
        return obligations[0]
    merged: dict[str, Any] = {}
    for item in reversed(obligations):
        merged.update(item)
    return merged


def _apply_vetoes(
    verdicts: list[Verdict], veto_families: Mapping[str, frozenset[str]]
) -> list[Verdict]:
    """Mark the restricting verdicts that an applying veto rule cancels (in place);
    return the cancelled enforce verdicts."""
    vetoers = [
        (v.rule_id, veto_families[v.rule_id])
        for v in verdicts
        if v.rule_id in veto_families and v.outcome is ALLOW and not v.dry_run
    ]
    if not vetoers:
        return []
    vetoed = []
    for index, verdict in enumerate(verdicts):
        if verdict.vetoed_by is not None or not verdict.restricts:
            continue
        for veto_id, families in vetoers:
            if verdict.family in families:
                verdicts[index] = verdict = replace(verdict, vetoed_by=veto_id)
                if not verdict.dry_run:
                    vetoed.append(verdict)
                break
    return vetoed


def _veto_summary(vetoed: Verdict, verdicts: list[Verdict]) -> tuple[str, str, str]:
    veto = next(v for v in verdicts if v.rule_id == vetoed.vetoed_by)
    blocks = vetoed.outcome is not ALLOW
    what = "block" if blocks else "limit"
    reason = (
        f"Allowed: the {vetoed.family} rule '{vetoed.rule_id}' would {what} this, but "
        f"'{veto.rule_id}' vetoes it. {veto.reason}"
    )
    return veto.rule_id, reason, f"{vetoed.family}_{what}_vetoed"
