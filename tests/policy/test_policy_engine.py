"""The combining rule, dry-run, scopes, fail-closed errors, reload and explain."""

from __future__ import annotations

import json

import pytest

from anywhere.policy import Engine, PolicyConfigError, Request, Rule
from anywhere.policy.rules import register_rule_type, unregister_rule_type

KR_3G_CHEAP = {
    "carrier": "SKT",
    "carrier_country": "KR",
    "network": "3g",
    "plan_price": 45000,
    "plan_currency": "KRW",
}
PLAN = {"type": "plan_threshold", "id": "kr-plan"}
QUOTA = {"type": "mvoip_quota", "id": "quota", "monthly_mb": 100}
VERIFY_CALLS = {"type": "require_verified", "id": "verify", "actions": ["call.place"]}


@pytest.mark.parametrize(
    ("rules", "outcome", "rule_id"),
    [
        ([], "allow", None),
        ([{"type": "no_blocking"}], "allow", "no_blocking"),
        ([{"type": "no_blocking"}, PLAN], "deny", "kr-plan"),
        ([PLAN, {"type": "wifi_only", "id": "wifi"}], "deny", "kr-plan"),
        ([{"type": "wifi_only", "id": "wifi"}, PLAN], "deny", "wifi"),
        ([VERIFY_CALLS, PLAN], "deny", "kr-plan"),
        ([PLAN, VERIFY_CALLS], "deny", "kr-plan"),
        ([VERIFY_CALLS], "require_verification", "verify"),
        ([{"type": "no_blocking"}, VERIFY_CALLS], "require_verification", "verify"),
    ],
)
def test_deny_beats_require_verification_beats_allow_first_in_order_decides(
    decide, rules, outcome, rule_id
):
    decision = decide(rules, "call.place", **KR_3G_CHEAP)
    assert (decision.outcome, decision.rule_id) == (outcome, rule_id)


def test_no_rule_with_an_opinion_allows_with_code_no_rule(decide):
    decision = decide([PLAN], "call.place", network="wifi")
    assert (decision.outcome, decision.rule_id, decision.code) == ("allow", None, "no_rule")
    assert decision.allowed and decision.reason == "No policy rule applies."


def test_allow_carries_obligations_merged_in_rule_order(decide):
    second_quota = {**QUOTA, "id": "quota-2", "monthly_mb": 500}
    decision = decide(
        [{"type": "no_blocking"}, QUOTA, second_quota],
        "call.place",
        network="lte",
        mvoip_mb_used_this_month=40,
    )
    assert decision.rule_id == "no_blocking"
    assert dict(decision.obligations) == {
        "mvoip_remaining_mb": 60,
        "mvoip_remaining_minutes": 136.8,
    }


def test_dry_run_verdicts_are_recorded_but_never_decide(decide):
    decision = decide(
        [{**PLAN, "mode": "dry-run"}, {"type": "no_blocking"}], "call.place", **KR_3G_CHEAP
    )
    assert decision.allowed and decision.rule_id == "no_blocking"
    (trial,) = decision.dry_run_verdicts
    assert (trial.rule_id, trial.outcome, trial.dry_run) == ("kr-plan", "deny", True)


def test_dry_run_obligations_are_not_applied(decide):
    decision = decide([{**QUOTA, "mode": "dry-run"}], "call.place", network="lte")
    assert decision.code == "no_rule" and dict(decision.obligations) == {}


@pytest.mark.parametrize(
    ("scope", "actor", "room_id", "applies"),
    [
        ({"users": ["@*:example.org"]}, "@kim:example.org", None, True),
        ({"users": ["@*:example.org"]}, "@kim:other.org", None, False),
        ({"users": ["@intern-*:example.org", "@kim:*"]}, "@kim:other.org", None, True),
        ({"rooms": ["!gov*:example.org"]}, "@kim:example.org", "!gov-hall:example.org", True),
        ({"rooms": ["!gov*:example.org"]}, "@kim:example.org", "!team:example.org", False),
        ({"rooms": ["!gov*:example.org"]}, "@kim:example.org", None, False),
    ],
)
def test_scope_selects_by_user_and_room_globs(decide, scope, actor, room_id, applies):
    decision = decide(
        [{**PLAN, "scope": scope}], "call.place", actor=actor, room_id=room_id, **KR_3G_CHEAP
    )
    assert decision.allowed is not applies


def test_actions_accept_globs(decide):
    rule = {"type": "wifi_only", "actions": ["drive.*"]}
    assert not decide([rule], "drive.share", network="lte").allowed
    assert decide([rule], "call.place", network="lte").allowed


class Exploding(Rule):
    type_name = "exploding"

    def evaluate(self, request):
        raise RuntimeError("directory offline")


@pytest.mark.parametrize(("mode", "allowed"), [("enforce", False), ("dry-run", True)])
def test_a_failing_rule_fails_closed_unless_dry_run(mode, allowed):
    engine = Engine.from_config(
        [{"type": "exploding", "mode": mode}], extra_types={"exploding": Exploding}
    )
    decision = engine.evaluate(Request("@kim:example.org", "room.post"))
    assert decision.allowed is allowed
    assert decision.verdicts[0].code == "rule_error"
    assert "directory offline" in decision.verdicts[0].reason


def test_decisions_have_unique_ids_the_ruleset_version_and_serialize_to_json():
    engine = Engine.from_config([PLAN], clock=lambda: 1_700_000_000.5)
    request = Request("@kim:example.org", "call.place", facts=KR_3G_CHEAP)
    first, second = engine.evaluate(request), engine.evaluate(request)
    assert first.decision_id != second.decision_id
    assert first.ruleset_version == engine.ruleset.version
    data = json.loads(json.dumps(first.to_dict()))
    assert data["outcome"] == "deny" and data["allowed"] is False
    assert data["decided_at"] == "2023-11-14T22:13:20.500+00:00"
    assert data["verdicts"][0]["code"] == "plan_below_mvoip_threshold"


def test_same_config_gives_same_version_and_an_explicit_version_wins():
    assert Engine.from_config([PLAN]).ruleset.version == Engine.from_config([PLAN]).ruleset.version
    engine = Engine.from_config([PLAN])
    assert engine.reload([PLAN], version="2012-06").version == "2012-06"


def test_reload_puts_the_new_rules_in_force():
    engine = Engine.from_config([PLAN])
    request = Request("@kim:example.org", "call.place", facts=KR_3G_CHEAP)
    assert not engine.evaluate(request).allowed
    engine.reload([{"type": "no_blocking"}])
    assert engine.evaluate(request).allowed


def test_reload_that_fails_validation_keeps_the_old_rule_set():
    engine = Engine.from_config([PLAN])
    old = engine.ruleset
    request = Request("@kim:example.org", "call.place", facts=KR_3G_CHEAP)
    with pytest.raises(PolicyConfigError) as caught:
        engine.reload([{"type": "no_blocking"}, {**PLAN, "thresholds": {"3g": "abc"}}])
    assert str(caught.value) == (
        "policy.rules[1].thresholds.3g: expected a positive number, found 'abc'"
        " — write numbers without thousands separators"
    )
    assert engine.ruleset is old
    assert not engine.evaluate(request).allowed


def test_reload_keeps_plugin_rule_types():
    engine = Engine.from_config([], extra_types={"exploding": Exploding})
    engine.reload([{"type": "exploding"}])
    assert engine.ruleset.rules[0].type == "exploding"


def test_plugin_rule_types_can_be_registered_globally():
    register_rule_type("exploding", Exploding)
    try:
        assert Engine.from_config([{"type": "exploding"}]).ruleset.rules[0].id == "exploding"
        with pytest.raises(ValueError, match="already registered"):
            register_rule_type("exploding", type("Other", (Exploding,), {}))
    finally:
        unregister_rule_type("exploding")


def test_plugin_types_may_not_shadow_builtin_ones():
    with pytest.raises(ValueError, match="clashes"):
        Engine.from_config([], extra_types={"wifi_only": Exploding})


def test_explain_shows_facts_each_rule_and_the_decision():
    engine = Engine.from_config(
        [
            {"type": "no_blocking"},
            PLAN,
            {**QUOTA, "mode": "dry-run"},
            {"type": "fcc_2010_no_blocking", "id": "fcc"},
            {"type": "wifi_only", "id": "interns", "scope": {"users": ["@intern-*:example.org"]}},
            {"type": "copyright_media"},
        ]
    )
    text = engine.explain(Request("@kim:example.org", "call.place", facts=KR_3G_CHEAP))
    lines = text.splitlines()
    assert lines[0].startswith("Policy for call.place by @kim:example.org (rule set ")
    assert lines[1].startswith("Facts: carrier=SKT, carrier_country=KR, plan_price=45000")
    assert "  1. no_blocking (no_blocking): ALLOW [no_blocking]" in text
    assert "  2. kr-plan (plan_threshold): DENY [plan_below_mvoip_threshold]" in text
    assert "  3. quota (mvoip_quota, dry-run): would ALLOW [mvoip_quota_remaining]" in text
    assert "  4. fcc (fcc_2010_no_blocking): not applicable" in text
    assert "  5. interns (wifi_only): out of scope: @kim:example.org is not among" in text
    assert "  Not covering call.place: copyright_media" in text
    assert "Decision: DENY by kr-plan [plan_below_mvoip_threshold] SKT blocks calls" in text


def test_explain_says_when_a_block_is_vetoed():
    engine = Engine.from_config([PLAN, {"type": "fcc_2010_no_blocking", "id": "fcc"}])
    facts = {**KR_3G_CHEAP, "carrier_country": "US"}
    text = engine.explain(Request("@kim:example.org", "call.place", facts=facts))
    assert "(vetoed by fcc)" in text
    assert "Decision: ALLOW by fcc [carrier_block_vetoed]" in text
