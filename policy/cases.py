"""Table-driven policy tests: ``anywhere policy test RULES.yaml CASES.yaml``.

A cases file lists requests with their facts and the expected outcome::

    defaults:                      # merged into every case; facts key by key
      actor: "@kim:example.org"
      facts: {carrier: SKT, carrier_country: KR, plan_currency: KRW}
    cases:
      - name: 3G plan below the threshold cannot call
        action: call.place
        facts: {network: 3g, plan_price: 45000}
        expect: {outcome: deny, rule: kr-plan, code: plan_below_mvoip_threshold}
      - name: on Wi-Fi anyone can call
        action: call.place
        facts: {network: wifi}
        expect: allow                # just the outcome

A case may set ``actor``, ``action``, ``target``, ``room_id``, ``context``, ``facts`` and
``expect`` (``outcome``, and optionally ``rule`` — null for "no rule" —, ``code`` and
``obligations``, compared key by key). A fact set to null removes a default.

The rules file is a list of rules, or a mapping with ``rules:``, or a whole Anywhere
config with ``policy: {rules: ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .engine import Engine
from .errors import MISSING, PolicyConfigError, Problem
from .model import Decision, Outcome, Request
from .rules import Rule

CASE_KEYS = ("name", "actor", "action", "target", "room_id", "context", "facts", "expect")
EXPECT_KEYS = ("outcome", "rule", "code", "obligations")
_OUTCOMES = tuple(str(o) for o in Outcome)


@dataclass(frozen=True)
class Case:
    index: int
    name: str
    request: Request
    outcome: Outcome
    rule: Any = MISSING
    code: str | None = None
    obligations: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CaseResult:
    case: Case
    decision: Decision
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True)
class CaseReport:
    rules_path: Path
    cases_path: Path
    ruleset_version: str
    results: tuple[CaseResult, ...]

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        """0 when every case matched, 1 otherwise (for the CLI)."""
        return 0 if self.ok else 1

    def format(self, *, verbose: bool = False) -> str:
        """The report as text: every mismatch (every case with ``verbose``) and a summary."""
        lines = []
        for result in self.results:
            case = result.case
            label = f"cases[{case.index}] {case.name!r}"
            if result.passed:
                if verbose:
                    lines.append(f"PASS {label}: {result.decision.outcome}")
                continue
            lines.append(f"FAIL {label}: {'; '.join(result.mismatches)}")
            lines.append(f"     reason: {result.decision.reason}")
        failed = len(self.failures)
        lines.append(
            f"{self.cases_path.name} against {self.rules_path.name} "
            f"(rule set {self.ruleset_version}): {len(self.results)} cases, "
            f"{len(self.results) - failed} passed, {failed} mismatched"
        )
        return "\n".join(lines)


def run_cases(
    rules_path: str | Path,
    cases_path: str | Path,
    *,
    extra_types: Mapping[str, type[Rule]] | None = None,
) -> CaseReport:
    """Evaluate every case of ``cases_path`` against the rules of ``rules_path``.

    Raises :class:`PolicyConfigError` when either file is unreadable or invalid (the
    CLI should exit with 2 then, and with ``report.exit_code`` otherwise).
    """
    rules_path, cases_path = Path(rules_path), Path(cases_path)
    rules, key = _rules_config(_read_yaml(rules_path), rules_path)
    engine = Engine.from_config(rules, extra_types=extra_types, key=key)
    rule_ids = [r.id for r in engine.ruleset]
    cases = _parse_cases(_read_yaml(cases_path), cases_path, rule_ids)
    results = tuple(_run(engine, case) for case in cases)
    return CaseReport(rules_path, cases_path, engine.ruleset.version, results)


def _run(engine: Engine, case: Case) -> CaseResult:
    decision = engine.evaluate(case.request)
    found = []
    if decision.outcome is not case.outcome:
        found.append(f"expected outcome {case.outcome}, got {decision.outcome}")
    if case.rule is not MISSING and decision.rule_id != case.rule:
        found.append(f"expected rule {case.rule}, got {decision.rule_id}")
    if case.code is not None and decision.code != case.code:
        found.append(f"expected code {case.code}, got {decision.code}")
    for name, value in (case.obligations or {}).items():
        got = decision.obligations.get(name, MISSING)
        if got != value:
            shown = "nothing" if got is MISSING else repr(got)
            found.append(f"expected obligation {name}={value!r}, got {shown}")
    return CaseResult(case, decision, tuple(found))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyConfigError.single(
            str(path), "a readable file", hint=exc.strerror or ""
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyConfigError.single(str(path), "valid YAML", hint=str(exc)) from None


def _rules_config(data: Any, path: Path) -> tuple[Any, str]:
    if isinstance(data, Mapping) and isinstance(data.get("policy"), Mapping):
        return data["policy"].get("rules"), f"{path.name}: policy.rules"
    if isinstance(data, Mapping) and "rules" in data:
        return data["rules"], f"{path.name}: rules"
    return data, f"{path.name}: rules"


def _parse_cases(data: Any, path: Path, rule_ids: list[str]) -> list[Case]:
    where = path.name
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise PolicyConfigError.single(where, "a mapping with a `cases:` list", data)
    problems: list[Problem] = []
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.append(Problem(f"{where}: defaults", "a mapping", defaults))
        defaults = {}
    for name in defaults:
        if name not in CASE_KEYS:
            problems.append(Problem(f"{where}: defaults.{name}", f"one of {', '.join(CASE_KEYS)}"))
    cases = []
    for index, item in enumerate(data["cases"]):
        key = f"{where}: cases[{index}]"
        start = len(problems)
        if not isinstance(item, Mapping):
            problems.append(Problem(key, "a mapping with at least `action` and `expect`", item))
            continue
        for name in item:
            if name not in CASE_KEYS:
                problems.append(Problem(f"{key}.{name}", f"one of {', '.join(CASE_KEYS)}"))
        merged = {**defaults, **item}
        facts = {**_mapping(defaults.get("facts"), f"{where}: defaults.facts", problems)}
        facts.update(_mapping(item.get("facts"), f"{key}.facts", problems))
        context = _mapping(merged.get("context"), f"{key}.context", problems)
        for name in ("actor", "action"):
            if not isinstance(merged.get(name), str):
                problems.append(Problem(f"{key}.{name}", "a string", merged.get(name)))
        expect = _expectation(item.get("expect"), f"{key}.expect", rule_ids, problems)
        if len(problems) > start or expect is None:
            continue
        request = Request(
            actor=merged["actor"],
            action=merged["action"],
            target=merged.get("target"),
            room_id=merged.get("room_id"),
            context=context,
            facts={k: v for k, v in facts.items() if v is not None},
        )
        name = str(item.get("name") or f"{request.action} by {request.actor}")
        cases.append(Case(index, name, request, **expect))
    if problems:
        raise PolicyConfigError(problems)
    return cases


def _mapping(value: Any, key: str, problems: list[Problem]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(Problem(key, "a mapping", value))
        return {}
    return dict(value)


def _expectation(
    value: Any, key: str, rule_ids: list[str], problems: list[Problem]
) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = {"outcome": value}
    if not isinstance(value, Mapping):
        problems.append(Problem(key, f"an outcome ({', '.join(_OUTCOMES)}) or a mapping", value))
        return None
    start = len(problems)
    for name in value:
        if name not in EXPECT_KEYS:
            problems.append(Problem(f"{key}.{name}", f"one of {', '.join(EXPECT_KEYS)}"))
    outcome = value.get("outcome")
    if outcome not in _OUTCOMES:
        problems.append(Problem(f"{key}.outcome", f"one of {', '.join(_OUTCOMES)}", outcome))
    rule = value.get("rule", MISSING)
    if rule is not MISSING and rule is not None and rule not in rule_ids:
        problems.append(
            Problem(f"{key}.rule", f"one of the rule ids ({', '.join(rule_ids)})", rule)
        )
    obligations = value.get("obligations")
    if obligations is not None and not isinstance(obligations, Mapping):
        problems.append(Problem(f"{key}.obligations", "a mapping", obligations))
    if len(problems) > start:
        return None
    return {
        "outcome": Outcome(outcome),
        "rule": rule,
        "code": value.get("code"),
        "obligations": obligations,
    }
