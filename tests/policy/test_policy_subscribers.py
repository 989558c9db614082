"""The subscriber directory (facts file) is checked like rules: every problem at once,
with its line and what was expected; a bad fact never reaches a person as an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from anywhere.plugins.policy.facts import read_subscribers
from anywhere.policy import PolicyConfigError

GOOD = """\
"@kim:example.kr": {carrier: SKT, carrier_country: kr, plan_price: 45000, plan_currency: krw}
"""

BAD = """\
"@kim:example.kr":
  carrier: skt
  plan_price: "45,000"
"@lee:example.kr": {carrier: KT, plan_price: -1, plan_currency: WONS}
"@park:example.kr": {carrier: KT, plan_price: .nan, plan: 54000}
kim: {carrier: KT}
"""


def test_a_valid_directory_is_normalized(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text(GOOD, "utf-8")
    assert read_subscribers(path, {"SKT"}) == {
        "@kim:example.kr": {
            "carrier": "SKT",
            "carrier_country": "KR",
            "plan_price": 45000,
            "plan_currency": "KRW",
        }
    }


def test_every_bad_fact_is_reported_with_its_line_and_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text(BAD, "utf-8")
    with pytest.raises(PolicyConfigError) as info:
        read_subscribers(path, {"SKT", "KT"})
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:1: @kim:example.kr.carrier: expected a carrier name as the rules write it, "
        "found 'skt' — did you mean 'SKT'?",
        f"{path}:1: @kim:example.kr.plan_price: expected a positive number, found '45,000' — "
        "write numbers without thousands separators",
        f"{path}:4: @lee:example.kr.plan_price: expected a positive number, found -1",
        f"{path}:4: @lee:example.kr.plan_currency: expected a 3-letter ISO 4217 currency code, "
        "found 'WONS'",
        f"{path}:5: @park:example.kr.plan_price: expected a positive number, found nan — "
        "NaN and infinity are not allowed; write the number itself",
        f"{path}:5: @park:example.kr.plan: expected one of carrier, carrier_country, "
        "plan_price, plan_currency — did you mean 'plan_price'?",
        f"{path}:6: kim: expected a Matrix user ID (@name:server), found 'kim'",
    ]
