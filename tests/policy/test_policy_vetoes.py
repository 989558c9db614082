"""Regulation rules veto carrier blocks: when they apply, what they cancel, and what not."""

from __future__ import annotations

import pytest

US_ATT = {"carrier": "AT&T", "carrier_country": "US", "network": "lte"}
NL_KPN = {"carrier": "KPN", "carrier_country": "NL", "network": "3g"}
WIFI_ONLY = {"type": "wifi_only", "id": "wifi-only"}
FCC = {"type": "fcc_2010_no_blocking", "id": "fcc"}
NL = {"type": "nl_7_4a", "id": "nl"}


@pytest.mark.parametrize(
    ("rules", "facts", "outcome", "rule_id", "code"),
    [
        ([WIFI_ONLY], US_ATT, "deny", "wifi-only", "wifi_only"),
        ([WIFI_ONLY, FCC], US_ATT, "allow", "fcc", "carrier_block_vetoed"),
        ([FCC, WIFI_ONLY], US_ATT, "allow", "fcc", "carrier_block_vetoed"),
        ([WIFI_ONLY, FCC], {**US_ATT, "carrier_country": "KR"}, "deny", "wifi-only", "wifi_only"),
        ([WIFI_ONLY, NL], NL_KPN, "allow", "nl", "carrier_block_vetoed"),
        ([WIFI_ONLY, NL], US_ATT, "deny", "wifi-only", "wifi_only"),
        ([WIFI_ONLY, FCC, NL], NL_KPN, "allow", "nl", "carrier_block_vetoed"),
        ([WIFI_ONLY, {**FCC, "mode": "dry-run"}], US_ATT, "deny", "wifi-only", "wifi_only"),
        ([WIFI_ONLY, {**FCC, "countries": ["CA"]}], US_ATT, "deny", "wifi-only", "wifi_only"),
        (
            [{"type": "plan_threshold", "id": "kr-plan"}, FCC],
            {"carrier_country": "US", "network": "3g", "plan_price": 45000},
            "allow",
            "fcc",
            "carrier_block_vetoed",
        ),
    ],
)
def test_regulation_vetoes_carrier_blocks_where_it_applies(
    decide, rules, facts, outcome, rule_id, code
):
    decision = decide(rules, "call.place", **facts)
    assert (decision.outcome, decision.rule_id, decision.code) == (outcome, rule_id, code)


def test_vetoed_block_stays_in_the_trace_and_the_reason_names_both_rules(decide):
    decision = decide([WIFI_ONLY, FCC], "call.place", **US_ATT)
    blocked = next(v for v in decision.verdicts if v.rule_id == "wifi-only")
    assert blocked.outcome == "deny" and blocked.vetoed_by == "fcc"
    assert decision.vetoed_verdicts == (blocked,)
    assert "'wifi-only' would block this" in decision.reason
    assert "vetoes it" in decision.reason and "FCC 2010" in decision.reason


def test_veto_drops_a_carrier_limit_too(decide):
    quota = {"type": "mvoip_quota", "id": "quota", "monthly_mb": 100}
    decision = decide([quota, FCC], "call.place", **US_ATT, mvoip_mb_used_this_month=10)
    assert decision.allowed and decision.code == "carrier_limit_vetoed"
    assert dict(decision.obligations) == {}


def test_veto_does_not_cancel_identity_or_content_rules(decide):
    verify = {"type": "require_verified", "id": "verify", "actions": ["call.place"]}
    decision = decide([WIFI_ONLY, verify, FCC], "call.place", **US_ATT)
    assert (decision.outcome, decision.rule_id) == ("require_verification", "verify")
    assert decision.vetoed_verdicts[0].rule_id == "wifi-only"


def test_fcc_rule_covers_calls_only_and_nl_rule_every_action(decide):
    wifi_everywhere = {**WIFI_ONLY, "actions": ["*"]}
    assert not decide([wifi_everywhere, FCC], "drive.share", **US_ATT).allowed
    assert decide([wifi_everywhere, NL], "drive.share", **NL_KPN).allowed


def test_unknown_carrier_country_means_no_veto(decide):
    decision = decide([WIFI_ONLY, FCC], "call.place", carrier="AT&T", network="lte")
    assert not decision.allowed
    fcc = next(v for v in decision.verdicts if v.rule_id == "fcc")
    assert (fcc.outcome, fcc.code) == (None, "country_unknown")
