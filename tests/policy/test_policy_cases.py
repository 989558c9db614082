"""``anywhere policy test``: table-driven cases, mismatch detection, file errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from anywhere.policy import PolicyConfigError
from anywhere.policy.cases import run_cases

EXAMPLES = Path(__file__).parents[2] / "policy" / "examples"
RULES = [{"type": "plan_threshold", "id": "kr-plan"}, {"type": "no_blocking"}]


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_korea_2012_example_passes():
    report = run_cases(EXAMPLES / "korea-2012.rules.yaml", EXAMPLES / "korea-2012.cases.yaml")
    assert report.ok and report.exit_code == 0, report.format()
    assert len(report.results) >= 10
    assert report.format().endswith("0 mismatched")


def test_mismatches_are_listed_and_exit_non_zero(tmp_path):
    rules = write(tmp_path / "rules.yaml", RULES)
    cases = write(
        tmp_path / "cases.yaml",
        {
            "defaults": {"actor": "@kim:example.org", "facts": {"plan_price": 45000}},
            "cases": [
                {
                    "name": "cheap 3G denied",
                    "action": "call.place",
                    "facts": {"network": "3g"},
                    "expect": {"outcome": "deny", "rule": "kr-plan"},
                },
                {
                    "name": "wrong on purpose",
                    "action": "call.place",
                    "facts": {"network": "3g"},
                    "expect": {"outcome": "allow", "rule": "no_blocking", "code": "no_blocking"},
                },
                {
                    "name": "default removed",
                    "action": "call.place",
                    "facts": {"network": "3g", "plan_price": None},
                    "expect": {"outcome": "deny", "rule": "kr-plan", "code": "plan_unknown"},
                },
            ],
        },
    )
    report = run_cases(rules, cases)
    assert report.exit_code == 1
    (failure,) = report.failures
    assert failure.case.name == "wrong on purpose"
    assert failure.mismatches == (
        "expected outcome allow, got deny",
        "expected rule no_blocking, got kr-plan",
        "expected code no_blocking, got plan_below_mvoip_threshold",
    )
    text = report.format()
    assert "FAIL cases[1] 'wrong on purpose': expected outcome allow, got deny" in text
    assert "3 cases, 2 passed, 1 mismatched" in text


def test_obligation_mismatch_is_reported(tmp_path):
    rules = write(tmp_path / "rules.yaml", {"rules": [{"type": "mvoip_quota", "monthly_mb": 100}]})
    cases = write(
        tmp_path / "cases.yaml",
        {
            "cases": [
                {
                    "actor": "@a:b",
                    "action": "call.place",
                    "facts": {"network": "lte"},
                    "expect": {"outcome": "allow", "obligations": {"mvoip_remaining_mb": 50}},
                }
            ]
        },
    )
    (failure,) = run_cases(rules, cases).failures
    assert failure.mismatches == ("expected obligation mvoip_remaining_mb=50, got 100",)


def test_rules_may_come_from_a_whole_anywhere_config(tmp_path):
    rules = write(tmp_path / "config.yaml", {"policy": {"rules": [{"type": "no_bloking"}]}})
    cases = write(tmp_path / "cases.yaml", {"cases": []})
    with pytest.raises(PolicyConfigError, match=r"^config.yaml: policy.rules\[0\].type: "):
        run_cases(rules, cases)


def test_invalid_cases_file_names_every_problem(tmp_path):
    rules = write(tmp_path / "rules.yaml", RULES)
    cases = write(
        tmp_path / "cases.yaml",
        {
            "cases": [
                {"action": "call.place", "expect": "denied"},
                {
                    "actor": "@a:b",
                    "action": "call.place",
                    "expect": {"outcome": "deny", "rule": "kr"},
                },
                {"actor": "@a:b", "action": "call.place", "expect": "deny", "fact": {}},
            ]
        },
    )
    with pytest.raises(PolicyConfigError) as caught:
        run_cases(rules, cases)
    assert str(caught.value).splitlines() == [
        "cases.yaml: cases[0].actor: expected a string, found None",
        "cases.yaml: cases[0].expect.outcome: expected one of allow, deny, "
        "require_verification, found 'denied'",
        "cases.yaml: cases[1].expect.rule: expected one of the rule ids (kr-plan, "
        "no_blocking), found 'kr'",
        "cases.yaml: cases[2].fact: expected one of name, actor, action, target, room_id, "
        "context, facts, expect",
    ]


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(PolicyConfigError, match="expected a readable file"):
        run_cases(tmp_path / "missing.yaml", tmp_path / "cases.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- type: [unclosed\n")
    with pytest.raises(PolicyConfigError, match="expected valid YAML"):
        run_cases(bad, bad)
