"""Carrier rules, one table per type: (facts, action) → outcome and code."""

from __future__ import annotations

import pytest

from anywhere.policy import Request
from anywhere.policy.rules import MvoipQuota, NoBlocking, PlanThreshold, WifiOnly

KR = {"carrier": "SKT", "carrier_country": "KR", "plan_currency": "KRW"}


def verdict_of(rule, action="call.place", **facts):
    return rule.evaluate(Request("@kim:example.org", action, facts=facts))


def test_no_blocking_allows_calls_on_any_network():
    verdict = verdict_of(NoBlocking("carrier-default"), network="3g", plan_price=1000)
    assert (verdict.outcome, verdict.code) == ("allow", "no_blocking")


@pytest.mark.parametrize(
    ("facts", "outcome", "code"),
    [
        ({"network": "3g", "plan_price": 45000}, "deny", "plan_below_mvoip_threshold"),
        ({"network": "3g", "plan_price": 53999}, "deny", "plan_below_mvoip_threshold"),
        ({"network": "3g", "plan_price": 54000}, "allow", "plan_allows_mvoip"),
        ({"network": "lte", "plan_price": 52000}, "allow", "plan_allows_mvoip"),
        ({"network": "lte", "plan_price": 51000}, "deny", "plan_below_mvoip_threshold"),
        ({"network": "wifi", "plan_price": 10000}, None, "wifi"),
        # Unknown facts are decided as the carriers did (when_unknown: deny by default).
        ({"plan_price": 10000}, "deny", "network_unknown"),
        ({"network": "3g"}, "deny", "plan_unknown"),
        ({"network": "3g", "plan_price": 30, "plan_currency": "USD"}, "deny", "currency_mismatch"),
        # A generation without a threshold of its own gets the highest one.
        ({"network": "5g", "plan_price": 10000}, "deny", "plan_below_mvoip_threshold"),
        ({"network": "5g", "plan_price": 54000}, "allow", "plan_allows_mvoip"),
    ],
)
def test_plan_threshold_blocks_mobile_voip_below_the_korean_defaults(facts, outcome, code):
    verdict = verdict_of(PlanThreshold("kr-plan"), **{**KR, **facts})
    assert (verdict.outcome, verdict.code) == (outcome, code)


def test_plan_threshold_denial_says_how_to_get_through():
    verdict = verdict_of(PlanThreshold("kr-plan"), **KR, network="3g", plan_price=45000)
    assert "54,000 KRW" in verdict.reason and "45,000 KRW" in verdict.reason
    assert "`!network wifi`" in verdict.reason and "plan" in verdict.reason
    assert verdict.reason.startswith("SKT blocks calls")


def test_plan_threshold_ignores_subscribers_of_other_carriers():
    rule = PlanThreshold("kt-only", carriers=["KT"])
    assert verdict_of(rule, **KR, network="3g", plan_price=1) is None


def test_plan_threshold_uses_configured_thresholds():
    rule = PlanThreshold("custom", thresholds={"5g": 70000}, currency="krw")
    assert verdict_of(rule, **KR, network="5g", plan_price=69000).outcome == "deny"
    assert verdict_of(rule, **KR, network="3g", plan_price=69000).outcome == "deny"


@pytest.mark.parametrize(
    ("when_unknown", "outcome"), [("deny", "deny"), ("allow", "allow"), ("skip", None)]
)
@pytest.mark.parametrize(
    ("facts", "code"),
    [
        ({"carrier_country": "KR", "network": "3g", "plan_price": 60000}, "carrier_unknown"),
        ({**KR, "plan_price": 60000}, "network_unknown"),
        ({**KR, "network": "lte"}, "plan_unknown"),
    ],
)
def test_each_unknown_fact_is_decided_as_when_unknown_says(facts, code, when_unknown, outcome):
    rule = PlanThreshold("kr-plan", carriers=["SKT"], when_unknown=when_unknown)
    verdict = verdict_of(rule, **facts)
    assert (verdict.outcome, verdict.code) == (outcome, code)
    if outcome == "deny":
        assert "is not known" in verdict.reason and "`!network" in verdict.reason


def test_an_unknown_carrier_on_wifi_is_not_refused():
    rule = PlanThreshold("kr-plan", carriers=["SKT"])
    assert verdict_of(rule, network="wifi").code == "wifi"
    assert verdict_of(WifiOnly("att", carriers=["AT&T"]), network="wifi") is None
    verdict = verdict_of(WifiOnly("att", carriers=["AT&T"]), network="lte")
    assert (verdict.outcome, verdict.code) == ("deny", "carrier_unknown")


@pytest.mark.parametrize(
    ("price", "used", "outcome", "code", "remaining"),
    [
        (30000, 0, "deny", "mvoip_not_in_plan", None),
        (54000, 150, "allow", "mvoip_quota_remaining", 50),
        (79000, 150, "allow", "mvoip_quota_remaining", 350),
        (79000, 500, "deny", "mvoip_quota_exhausted", None),
        (None, 0, "deny", "plan_unknown", None),
    ],
)
def test_the_allowance_can_depend_on_the_plan(price, used, outcome, code, remaining):
    rule = MvoipQuota("kr-quota", monthly_mb={54000: 200, 79000: 500})
    facts = {**KR, "network": "lte", "mvoip_mb_used_this_month": used}
    if price is not None:
        facts["plan_price"] = price
    verdict = verdict_of(rule, **facts)
    assert (verdict.outcome, verdict.code) == (outcome, code)
    if remaining is not None:
        assert verdict.obligations["mvoip_remaining_mb"] == remaining


@pytest.mark.parametrize(
    ("used", "outcome", "code", "obligations"),
    [
        (
            None,
            "allow",
            "mvoip_quota_remaining",
            {"mvoip_remaining_mb": 100, "mvoip_remaining_minutes": 228.0},
        ),
        (
            75,
            "allow",
            "mvoip_quota_remaining",
            {"mvoip_remaining_mb": 25, "mvoip_remaining_minutes": 57.0},
        ),
        (100, "deny", "mvoip_quota_exhausted", {}),
        (130.5, "deny", "mvoip_quota_exhausted", {}),
    ],
)
def test_mvoip_quota_caps_monthly_megabytes(used, outcome, code, obligations):
    facts = {**KR, "network": "lte"}
    if used is not None:
        facts["mvoip_mb_used_this_month"] = used
    verdict = verdict_of(MvoipQuota("quota", monthly_mb=100), **facts)
    assert (verdict.outcome, verdict.code, dict(verdict.obligations)) == (
        outcome,
        code,
        obligations,
    )


def test_mvoip_quota_has_no_opinion_on_wifi():
    verdict = verdict_of(
        MvoipQuota("quota", monthly_mb=100), network="wifi", mvoip_mb_used_this_month=500
    )
    assert verdict.outcome is None


def test_mvoip_quota_exhausted_tells_to_use_wifi():
    verdict = verdict_of(
        MvoipQuota("quota", monthly_mb=100), network="3g", mvoip_mb_used_this_month=100
    )
    assert "100 MB" in verdict.reason and "`!network wifi`" in verdict.reason


@pytest.mark.parametrize(
    ("network", "outcome", "code"),
    [
        ("wifi", "allow", "wifi"),
        ("lte", "deny", "wifi_only"),
        ("3g", "deny", "wifi_only"),
        (None, "deny", "network_unknown"),
    ],
)
def test_wifi_only_allows_calls_only_on_wifi(network, outcome, code):
    facts = {"carrier": "AT&T"} if network is None else {"carrier": "AT&T", "network": network}
    verdict = verdict_of(WifiOnly("att"), **facts)
    assert (verdict.outcome, verdict.code) == (outcome, code)
    if outcome == "deny":
        assert "`!network wifi`" in verdict.reason


def test_carrier_rules_cover_calls_only_by_default():
    rule = WifiOnly("att")
    assert rule.applies_to("call.place") and rule.applies_to("call.answer")
    assert not rule.applies_to("room.post")
