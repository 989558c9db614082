"""Identity rules: who must verify, by which methods, and the public-institution scope."""

from __future__ import annotations

import pytest

from anywhere.policy import Request
from anywhere.policy.rules import DailyUsersThreshold

VERIFY_GROUPS = {"type": "require_verified", "id": "verify", "actions": ["group.create"]}


@pytest.mark.parametrize(
    ("rule", "action", "facts", "outcome", "code"),
    [
        ({"type": "none"}, "group.create", {}, "allow", "no_verification_required"),
        (VERIFY_GROUPS, "group.create", {}, "require_verification", "verification_required"),
        (
            VERIFY_GROUPS,
            "group.create",
            {"verified_methods": []},
            "require_verification",
            "verification_required",
        ),
        (VERIFY_GROUPS, "group.create", {"verified_methods": ["email"]}, "allow", "verified"),
        (VERIFY_GROUPS, "group.create", {"verified_methods": "code"}, "allow", "verified"),
        (VERIFY_GROUPS, "room.post", {}, "allow", "no_rule"),
        (
            {**VERIFY_GROUPS, "methods": ["code"]},
            "group.create",
            {"verified_methods": ["email"]},
            "require_verification",
            "verification_required",
        ),
        (
            {"type": "require_verified"},
            "room.post",
            {},
            "require_verification",
            "verification_required",
        ),
        (
            {"type": "threshold"},
            "room.post",
            {"daily_active_users": 100_000},
            "require_verification",
            "verification_required",
        ),
        ({"type": "threshold"}, "room.post", {"daily_active_users": 99_999}, "allow", "no_rule"),
        ({"type": "threshold"}, "room.post", {}, "allow", "no_rule"),
        (
            {"type": "threshold", "daily_active_users": 10},
            "room.post",
            {"daily_active_users": 10, "verified_methods": ["msisdn"]},
            "allow",
            "verified",
        ),
    ],
)
def test_identity_rules(decide, rule, action, facts, outcome, code):
    decision = decide([rule], action, **facts)
    assert (decision.outcome, decision.code) == (outcome, code)


def test_threshold_records_why_it_did_not_apply(decide):
    decision = decide([{"type": "threshold"}], "room.post", daily_active_users=5)
    (verdict,) = decision.verdicts
    assert verdict.outcome is None and verdict.code == "below_threshold"
    assert "100,000" in verdict.reason


@pytest.mark.parametrize(
    ("methods", "told"),
    [
        (["code"], ["`!verify phone NUMBER`", "`!verify code CODE`"]),
        (["email"], ["email address verified on your account by your homeserver"]),
        (
            ["msisdn", "code"],
            [
                "phone number verified on your account by your homeserver (ask its operator",
                "`!verify phone NUMBER`",
            ],
        ),
    ],
)
def test_person_required_to_verify_is_told_how(decide, methods, told):
    decision = decide([{**VERIFY_GROUPS, "methods": methods}], "group.create")
    for text in told:
        assert text in decision.reason


@pytest.mark.parametrize(
    ("public_institution", "facts", "outcome"),
    [
        (True, {"public_institution": True}, "require_verification"),
        (True, {"public_institution": False}, "allow"),
        (True, {}, "allow"),
        (False, {}, "require_verification"),
        (False, {"public_institution": True}, "allow"),
    ],
)
def test_public_institution_scope(decide, public_institution, facts, outcome):
    rule = {"type": "require_verified", "scope": {"public_institution": public_institution}}
    assert decide([rule], "room.post", **facts).outcome == outcome


def test_the_threshold_with_an_unknown_count_follows_when_unknown():
    request = Request("@kim:example.kr", "room.post", facts={"verified_methods": []})
    assert DailyUsersThreshold("t").evaluate(request).code == "dau_unknown"
    strict = DailyUsersThreshold("t", when_unknown="require")
    assert strict.evaluate(request).code == "verification_required"
    assert strict.needs_facts(request) and not DailyUsersThreshold("t").needs_facts(request)
