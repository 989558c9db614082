"""Carrier rules: what a mobile carrier allows for VoIP over its data network.

They cover ``call.place`` and ``call.answer`` by default and only ever restrict mobile
data: on Wi-Fi they have no opinion (or allow). With ``carriers: [...]`` a rule applies
only to subscribers of those carriers (fact ``carrier``). Regulation rules
(:mod:`policy.rules.regulation`) can veto their blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..actions import MVOIP_ACTIONS
from ..facts import CARRIER, MOBILE_NETWORKS, MVOIP_MB_USED, NETWORK, PLAN_CURRENCY, PLAN_PRICE
from ..facts import WIFI as WIFI_NETWORK
from ..model import Request, Verdict
from .base import Rule
from .params import Param, mapping_of, positive_number, string_set, upper_code

SWITCH_TO_WIFI = "switch to Wi-Fi and send `!network wifi`"
_NETWORK_LABELS = {"wifi": "Wi-Fi", "3g": "3G", "lte": "LTE", "5g": "5G"}


def network_label(network: str) -> str:
    return _NETWORK_LABELS.get(network, network)


def money(amount: float, currency: str) -> str:
    if float(amount).is_integer():
        return f"{int(amount):,} {currency}"
    return f"{amount:,.2f} {currency}"


def carrier_name(facts: Mapping[str, Any]) -> str:
    return facts.get(CARRIER) or "Your carrier"


class CarrierRule(Rule):
    """Common to carrier rules: the ``carriers`` filter and the Wi-Fi/unknown cases."""

    family = "carrier"
    default_actions = MVOIP_ACTIONS
    params = {
        "carriers": Param(
            string_set(), None, "carrier names this rule applies to (default: every carrier)"
        ),
    }

    def prepare(self) -> None:
        self._on_wifi = self.no_opinion(
            "On Wi-Fi: carrier limits on mobile data do not apply.", "wifi"
        )
        self._network_unknown = self.no_opinion(
            "Network unknown (send `!network wifi|lte|3g`), so this carrier rule is not applied.",
            "network_unknown",
        )

    def covers(self, facts: Mapping[str, Any]) -> bool:
        return self.carriers is None or facts.get(CARRIER) in self.carriers


class MobileDataRule(CarrierRule):
    """A carrier rule about calls over mobile data: no opinion on Wi-Fi or when the
    network is unknown; subclasses decide the mobile case in ``on_mobile_data``."""

    def evaluate(self, request: Request) -> Verdict | None:
        facts = request.facts
        if not self.covers(facts):
            return None
        network = facts.get(NETWORK)
        if network == WIFI_NETWORK:
            return self._on_wifi
        if network not in MOBILE_NETWORKS:
            return self._network_unknown
        return self.on_mobile_data(facts, network)

    def on_mobile_data(self, facts: Mapping[str, Any], network: str) -> Verdict | None:
        raise NotImplementedError


class NoBlocking(CarrierRule):
    """The default: carriers do not restrict VoIP calls."""

    type_name = "no_blocking"

    def prepare(self) -> None:
        super().prepare()
        self._allowed = self.allow("No carrier restriction on calls.", "no_blocking")

    def evaluate(self, request: Request) -> Verdict | None:
        return self._allowed if self.covers(request.facts) else None


class PlanThreshold(MobileDataRule):
    """Blocks calls over mobile data on plans cheaper than a price per network generation
    (the Korean carriers' practice in 2012: 54,000 KRW on 3G, 52,000 KRW on LTE).

    No opinion on Wi-Fi, on an unknown network or plan (subscriber not in the
    directory), for a generation without a threshold, or for a plan priced in another
    currency. A missing ``plan_currency`` is taken to be the rule's ``currency``.
    """

    type_name = "plan_threshold"
    params = {
        **CarrierRule.params,
        "thresholds": Param(
            mapping_of(sorted(MOBILE_NETWORKS), positive_number),
            MappingProxyType({"3g": 54000, "lte": 52000}),
            "{network: minimum monthly plan price} for mobile VoIP",
        ),
        "currency": Param(upper_code(3, "ISO 4217 currency"), "KRW", "currency of thresholds"),
    }

    def prepare(self) -> None:
        super().prepare()
        self._plan_unknown = self.no_opinion(
            "Plan unknown (not in the subscriber directory), so the plan threshold is not applied.",
            "plan_unknown",
        )

    def on_mobile_data(self, facts: Mapping[str, Any], network: str) -> Verdict | None:
        threshold = self.thresholds.get(network)
        if threshold is None:
            return self.no_opinion(
                f"No plan threshold set for {network_label(network)}.", "no_threshold"
            )
        price = facts.get(PLAN_PRICE)
        if price is None:
            return self._plan_unknown
        currency = facts.get(PLAN_CURRENCY) or self.currency
        if currency != self.currency:
            return self.no_opinion(
                f"Plan priced in {currency}, this rule's thresholds are in {self.currency}.",
                "currency_mismatch",
            )
        label = network_label(network)
        if price >= threshold:
            return self.allow(
                f"Your plan ({money(price, currency)}) includes calls over {label} "
                f"(from {money(threshold, currency)}).",
                "plan_allows_mvoip",
            )
        return self.deny(
            f"{carrier_name(facts)} blocks calls over mobile data ({label}) on plans under "
            f"{money(threshold, currency)}; yours is {money(price, currency)}. To call, "
            f"{SWITCH_TO_WIFI}, or change to a plan of {money(threshold, currency)} or more.",
            "plan_below_mvoip_threshold",
        )


class MvoipQuota(MobileDataRule):
    """A monthly allowance of mobile data for calls. Below it, the call is allowed with
    obligations ``mvoip_remaining_mb`` and ``mvoip_remaining_minutes`` (about 2.28
    minutes per MB) so the caller can cut the call at the cap; at or above it, denied.
    A missing ``mvoip_mb_used_this_month`` counts as 0."""

    type_name = "mvoip_quota"
    params = {
        **CarrierRule.params,
        "monthly_mb": Param(positive_number, doc="a positive number of MB per month"),
        "minutes_per_mb": Param(positive_number, 2.28, "minutes of calling per MB"),
    }

    def on_mobile_data(self, facts: Mapping[str, Any], network: str) -> Verdict | None:
        used = facts.get(MVOIP_MB_USED) or 0
        remaining = self.monthly_mb - used
        if remaining <= 0:
            return self.deny(
                f"You have used your {self.monthly_mb:g} MB of calling over mobile data for "
                f"this month ({used:g} MB). To call, {SWITCH_TO_WIFI}, or move to a plan "
                "with a larger allowance.",
                "mvoip_quota_exhausted",
            )
        minutes = round(remaining * self.minutes_per_mb, 1)
        return self.allow(
            f"{remaining:g} MB of calling over mobile data left this month "
            f"(about {minutes:g} minutes).",
            "mvoip_quota_remaining",
            {"mvoip_remaining_mb": round(remaining, 3), "mvoip_remaining_minutes": minutes},
        )


class WifiOnly(CarrierRule):
    """Calls only over Wi-Fi. An unknown network is treated as mobile data (denied, with
    the command that reports Wi-Fi)."""

    type_name = "wifi_only"

    def prepare(self) -> None:
        super().prepare()
        self._allowed = self.allow("On Wi-Fi.", "wifi")

    def evaluate(self, request: Request) -> Verdict | None:
        facts = request.facts
        if not self.covers(facts):
            return None
        network = facts.get(NETWORK)
        if network == WIFI_NETWORK:
            return self._allowed
        if network is None:
            return self.deny(
                f"{carrier_name(facts)} allows calls only over Wi-Fi and your network is not "
                "known. If you are on Wi-Fi, send `!network wifi`.",
                "network_unknown",
            )
        return self.deny(
            f"{carrier_name(facts)} allows calls only over Wi-Fi; you are on "
            f"{network_label(network)}. To call, {SWITCH_TO_WIFI}.",
            "wifi_only",
        )
