"""Config errors name the key, what was found and what is expected — all at once."""

from __future__ import annotations

import pytest

from anywhere.policy import PolicyConfigError, load_ruleset
from anywhere.policy.rules import PlanThreshold


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            [
                {"type": "no_blocking"},
                {"type": "no_blocking", "id": "x"},
                {"type": "mvoip_quota", "monthly_mb": "abc"},
            ],
            "policy.rules[2].monthly_mb: expected a positive number, found 'abc'"
            " — write numbers without thousands separators",
        ),
        (
            [{"type": "plan_threshold", "thresholds": {"3g": float("nan")}}],
            "policy.rules[0].thresholds.3g: expected a positive number, found nan"
            " — NaN and infinity are not allowed; write the number itself",
        ),
        (
            [{"type": "mvoip_quota", "monthly_mb": float("inf")}],
            "policy.rules[0].monthly_mb: expected a positive number, found inf"
            " — NaN and infinity are not allowed; write the number itself",
        ),
        (
            [{"type": "plan_threshold", "actions": ["call.answer", "call.plase"]}],
            "policy.rules[0].actions[1]: expected an action Anywhere asks about (bot.command, "
            "call.answer, call.place, drive.invite, drive.share, group.create, room.invite, "
            "room.post) or a plugin's own, found 'call.plase' — did you mean 'call.place'?",
        ),
        (
            [{"type": "require_verified", "actions": ["room.*", "room.psot", "rooms.*"]}],
            "policy.rules[0].actions[1]: expected an action Anywhere asks about (bot.command, "
            "call.answer, call.place, drive.invite, drive.share, group.create, room.invite, "
            "room.post) or a plugin's own, found 'room.psot' — did you mean 'room.post'?",
        ),
        (
            [{"type": "require_verified", "actions": ["call.*", "call.hangup"]}],
            "policy.rules[0].actions[1]: expected an action Anywhere asks about (bot.command, "
            "call.answer, call.place, drive.invite, drive.share, group.create, room.invite, "
            "room.post) or a plugin's own, found 'call.hangup' — did you mean 'call.answer'?",
        ),
        (
            [{"type": "mvoip_quota", "monthly_mb": -5}],
            "policy.rules[0].monthly_mb: expected a positive number, found -5",
        ),
        (
            [{"type": "mvoip_quota"}],
            "policy.rules[0].monthly_mb: expected a number of MB per month, or {minimum plan "
            "price: MB} — it is required",
        ),
        (
            [{"type": "plan_treshold"}],
            "policy.rules[0].type: expected one of the known rule types (copyright_media, "
            "fcc_2010_no_blocking, mvoip_quota, nl_7_4a, no_blocking, none, plan_threshold, "
            "require_verified, threshold, wifi_only), found 'plan_treshold'"
            " — did you mean 'plan_threshold'?",
        ),
        (
            [{"id": "orphan"}],
            "policy.rules[0].type: expected one of the known rule types (copyright_media, "
            "fcc_2010_no_blocking, mvoip_quota, nl_7_4a, no_blocking, none, plan_threshold, "
            "require_verified, threshold, wifi_only), found None",
        ),
        (
            [{"type": "plan_threshold", "treshold": 5}],
            "policy.rules[0].treshold: expected one of the keys of a plan_threshold rule "
            "(type, id, mode, actions, scope, carriers, when_unknown, thresholds, currency)"
            " — did you mean 'thresholds'?",
        ),
        (
            [{"type": "plan_threshold", "thresholds": {"4g": 50000}}],
            "policy.rules[0].thresholds.4g: expected one of the keys 3g, 5g, lte, found '4g'",
        ),
        (
            [{"type": "no_blocking", "mode": "dryrun"}],
            "policy.rules[0].mode: expected enforce or dry-run, found 'dryrun'",
        ),
        (
            [{"type": "require_verified", "methods": ["email", "passport"]}],
            "policy.rules[0].methods[1]: expected one of email, msisdn, code, found 'passport'",
        ),
        (
            [{"type": "threshold", "daily_active_users": 1.5}],
            "policy.rules[0].daily_active_users: expected a positive whole number, found 1.5",
        ),
        (
            [{"type": "no_blocking", "scope": {"users": ["@*:a.org"], "room": ["!x"]}}],
            "policy.rules[0].scope.room: expected one of users, rooms, public_institution"
            " — did you mean 'rooms'?",
        ),
        (
            [{"type": "no_blocking", "scope": {"public_institution": "yes"}}],
            "policy.rules[0].scope.public_institution: expected true or false, found 'yes'",
        ),
        (
            [{"type": "fcc_2010_no_blocking", "countries": ["USA"]}],
            "policy.rules[0].countries[0]: expected a 2-letter ISO 3166 country code, found 'USA'",
        ),
        (
            [{"type": "no_blocking"}, {"type": "no_blocking"}],
            "policy.rules[1].id: expected a rule id not used before, found 'no_blocking'"
            " — policy.rules[0] has it too; give each rule its own id",
        ),
        (
            [{"type": "no_blocking", "actions": []}],
            "policy.rules[0].actions: expected a non-empty list, found []",
        ),
        (
            ["no_blocking"],
            "policy.rules[0]: expected a mapping with at least a `type` key, found 'no_blocking'",
        ),
        (
            {"type": "no_blocking"},
            "policy.rules: expected a list of rules, found {'type': 'no_blocking'}",
        ),
    ],
)
def test_config_error_messages(config, message):
    with pytest.raises(PolicyConfigError) as caught:
        load_ruleset(config)
    assert str(caught.value) == message


def test_a_plugins_own_actions_and_globs_are_accepted():
    ruleset = load_ruleset(
        [{"type": "require_verified", "actions": ["acme.roam", "acme.*", "call.*", "*"]}]
    )
    assert ruleset.rules[0].applies_to("acme.roam")


def test_every_problem_is_reported_at_once():
    config = [
        {"type": "plan_threshold", "mode": "strict", "currency": "₩", "thresholds": []},
        {"type": "wifi_only", "carriers": 7},
    ]
    with pytest.raises(PolicyConfigError) as caught:
        load_ruleset(config, key="anywhere.policy")
    assert [p.key for p in caught.value.problems] == [
        "anywhere.policy[0].mode",
        "anywhere.policy[0].thresholds",
        "anywhere.policy[0].currency",
        "anywhere.policy[1].carriers",
    ]


def test_rules_built_in_python_are_checked_too():
    with pytest.raises(PolicyConfigError, match=r"rule 'x'\.currency: expected a 3-letter"):
        PlanThreshold("x", currency="KRWN")


def test_empty_or_missing_rule_list_is_an_empty_rule_set():
    assert len(load_ruleset(None)) == 0
    assert len(load_ruleset([])) == 0
