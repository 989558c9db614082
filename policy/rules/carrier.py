"""Carrier rules: what a mobile carrier allows for VoIP over its data network.

They cover ``call.place`` and ``call.answer`` by default and only ever restrict mobile
data: on Wi-Fi they have no opinion (or allow). With ``carriers: [...]`` a rule applies
only to subscribers of those carriers (fact ``carrier``). Regulation rules
(:mod:`anywhere.policy.rules.regulation`) can veto their blocks.
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
from .params import (
    Invalid,
    Param,
    mapping_of,
    non_negative_number,
    one_of,
    positive_number,
    string_set,
    upper_code,
)

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


WHEN_UNKNOWN = ("deny", "allow", "skip")
"""What a carrier rule does when a fact it needs is unknown (``when_unknown``): refuse
with a reason that says which fact and how to make it known, allow, or have no opinion
(``skip``: other rules decide)."""


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

    def covers(self, facts: Mapping[str, Any]) -> bool:
        return self.carriers is None or facts.get(CARRIER) in self.carriers


class MobileDataRule(CarrierRule):
    """A carrier rule about calls over mobile data: no opinion on Wi-Fi; subclasses
    decide the mobile case in ``on_mobile_data``. When the person's carrier (for a rule
    with ``carriers``), network or plan is unknown, ``when_unknown`` decides: by default
    ``deny``, as the carriers these rules model did (calls over mobile data only for
    subscribers known to be on a plan that includes them)."""

    params = {
        **CarrierRule.params,
        "when_unknown": Param(
            one_of(*WHEN_UNKNOWN), "deny", "deny, allow or skip when a needed fact is unknown"
        ),
    }

    def unknown(self, what: str, how: str, code: str) -> Verdict:
        """The verdict for an unknown fact, as ``when_unknown`` says."""
        if self.when_unknown == "allow":
            return self.allow(f"{what} is not known; allowed (when_unknown: allow).", code)
        if self.when_unknown == "skip":
            return self.no_opinion(f"{what} is not known, so this rule is not applied.", code)
        return self.deny(
            f"{what} is not known, so calls over mobile data cannot be allowed. {how}", code
        )

    def evaluate(self, request: Request) -> Verdict | None:
        facts = request.facts
        network = facts.get(NETWORK)
        if self.carriers is not None:
            carrier = facts.get(CARRIER)
            if carrier is None:
                if network == WIFI_NETWORK:
                    return self._on_wifi
                return self.unknown(
                    "Your mobile carrier",
                    f"To call, {SWITCH_TO_WIFI}, or ask your operator to add your "
                    "subscription to the subscriber directory.",
                    "carrier_unknown",
                )
            if carrier not in self.carriers:
                return None
        if network == WIFI_NETWORK:
            return self._on_wifi
        if network not in MOBILE_NETWORKS:
            return self.unknown(
                "The network you are on",
                "If you are on Wi-Fi, send `!network wifi`; on mobile data, send "
                "`!network lte` (or 3g, 5g).",
                "network_unknown",
            )
        return self.on_mobile_data(facts, network)

    def plan_unknown(self) -> Verdict:
        return self.unknown(
            "Your plan",
            f"To call, {SWITCH_TO_WIFI}, or ask your operator to add your plan to the "
            "subscriber directory.",
            "plan_unknown",
        )

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

    No opinion on Wi-Fi. A mobile network without a threshold of its own gets the highest
    threshold given (a newer generation is not cheaper to call on). An unknown carrier,
    network or plan, or a plan priced in another currency, is decided by
    ``when_unknown`` (default ``deny``). A missing ``plan_currency`` is taken to be the
    rule's ``currency``.
    """

    type_name = "plan_threshold"
    params = {
        **MobileDataRule.params,
        "thresholds": Param(
            mapping_of(sorted(MOBILE_NETWORKS), positive_number),
            MappingProxyType({"3g": 54000, "lte": 52000}),
            "{network: minimum monthly plan price} for mobile VoIP",
        ),
        "currency": Param(upper_code(3, "ISO 4217 currency"), "KRW", "currency of thresholds"),
    }

    def prepare(self) -> None:
        super().prepare()
        if not self.thresholds:
            raise Invalid("at least one network with a threshold", {}, ".thresholds")
        self._highest = max(self.thresholds.values())

    def on_mobile_data(self, facts: Mapping[str, Any], network: str) -> Verdict | None:
        threshold = self.thresholds.get(network, self._highest)
        price = facts.get(PLAN_PRICE)
        if price is None:
            return self.plan_unknown()
        currency = facts.get(PLAN_CURRENCY) or self.currency
        if currency != self.currency:
            return self.unknown(
                f"Your plan's price in {self.currency} (it is priced in {currency})",
                f"To call, {SWITCH_TO_WIFI}.",
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


def allowance(value: Any) -> float | dict[float, float]:
    """``monthly_mb``: a number of MB, or ``{minimum plan price: MB}`` tiers."""
    if isinstance(value, Mapping):
        if not value:
            raise Invalid("a number of MB, or {minimum plan price: MB}", value)
        tiers = {}
        for price, mb in value.items():
            try:
                tiers[positive_number(price) if price != 0 else 0] = non_negative_number(mb)
            except Invalid as exc:
                raise Invalid(
                    "{minimum plan price: MB} with prices of 0 or more and MB of 0 or more",
                    exc.found,
                    f".{price}",
                    exc.hint,
                ) from None
        return dict(sorted(tiers.items()))
    return positive_number(value)


class MvoipQuota(MobileDataRule):
    """A monthly allowance of mobile data for calls: ``monthly_mb`` MB, or an allowance
    per plan, ``{minimum plan price: MB}`` in ``currency`` (a plan below the lowest tier
    includes none). Below it, the call is allowed with obligations
    ``mvoip_remaining_mb`` and ``mvoip_remaining_minutes`` (about 2.28 minutes per MB) so
    the caller can cut the call at the cap; at or above it, denied. A missing
    ``mvoip_mb_used_this_month`` counts as 0; an unknown carrier, network or (with tiers)
    plan is decided by ``when_unknown`` (default ``deny``)."""

    type_name = "mvoip_quota"
    params = {
        **MobileDataRule.params,
        "monthly_mb": Param(allowance, doc="a number of MB per month, or {minimum plan price: MB}"),
        "currency": Param(upper_code(3, "ISO 4217 currency"), "KRW", "currency of the tiers"),
        "minutes_per_mb": Param(positive_number, 2.28, "minutes of calling per MB"),
    }

    def allowance_for(self, facts: Mapping[str, Any]) -> float | Verdict:
        """The person's monthly MB, or the verdict when it cannot be known."""
        if not isinstance(self.monthly_mb, dict):
            return self.monthly_mb
        price = facts.get(PLAN_PRICE)
        if price is None:
            return self.plan_unknown()
        currency = facts.get(PLAN_CURRENCY) or self.currency
        if currency != self.currency:
            return self.unknown(
                f"Your plan's price in {self.currency} (it is priced in {currency})",
                f"To call, {SWITCH_TO_WIFI}.",
                "currency_mismatch",
            )
        mb = 0.0
        for minimum, tier_mb in self.monthly_mb.items():
            if price >= minimum:
                mb = tier_mb
        return mb

    def on_mobile_data(self, facts: Mapping[str, Any], network: str) -> Verdict | None:
        monthly = self.allowance_for(facts)
        if isinstance(monthly, Verdict):
            return monthly
        if monthly <= 0:
            currency = facts.get(PLAN_CURRENCY) or self.currency
            return self.deny(
                f"Your plan ({money(facts.get(PLAN_PRICE) or 0, currency)}) includes no "
                f"calling over mobile data. To call, {SWITCH_TO_WIFI}, or change to a plan "
                "that includes it.",
                "mvoip_not_in_plan",
            )
        used = facts.get(MVOIP_MB_USED) or 0
        remaining = monthly - used
        if remaining <= 0:
            return self.deny(
                f"You have used your {monthly:g} MB of calling over mobile data for "
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
    the command that reports Wi-Fi), and so is an unknown carrier for a rule with
    ``carriers`` — that is what such a carrier does; ``when_unknown`` can say otherwise."""

    type_name = "wifi_only"
    params = {
        **CarrierRule.params,
        "when_unknown": Param(
            one_of(*WHEN_UNKNOWN), "deny", "deny, allow or skip when a needed fact is unknown"
        ),
    }

    def prepare(self) -> None:
        super().prepare()
        self._allowed = self.allow("On Wi-Fi.", "wifi")

    def evaluate(self, request: Request) -> Verdict | None:
        facts = request.facts
        network = facts.get(NETWORK)
        if network == WIFI_NETWORK:
            return self._allowed if self.covers(facts) else None
        unknown_carrier = self.carriers is not None and facts.get(CARRIER) is None
        if not unknown_carrier and not self.covers(facts):
            return None
        if network is None or unknown_carrier:
            what = "your network is not known" if network is None else "your carrier is not known"
            if self.when_unknown == "allow":
                return self.allow(f"Allowed although {what} (when_unknown: allow).", "unknown")
            if self.when_unknown == "skip":
                return self.no_opinion(f"Not applied: {what}.", "unknown")
            return self.deny(
                f"{carrier_name(facts)} allows calls only over Wi-Fi and {what}. If you are "
                "on Wi-Fi, send `!network wifi`.",
                "network_unknown" if network is None else "carrier_unknown",
            )
        return self.deny(
            f"{carrier_name(facts)} allows calls only over Wi-Fi; you are on "
            f"{network_label(network)}. To call, {SWITCH_TO_WIFI}.",
            "wifi_only",
        )
