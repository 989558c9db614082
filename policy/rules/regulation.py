"""Regulation rules: laws that forbid carriers to block applications.

A regulation rule *applies* when the subscriber's carrier is in one of its
``countries`` (fact ``carrier_country``); it then answers **allow**, and the engine
treats that enforce allow as a veto of every restricting verdict (a deny, or a limit
through obligations) of the families in ``vetoes`` — carrier rules. Vetoed verdicts
stay in the trace with ``vetoed_by`` set. Outside its countries it has no opinion.
"""

from __future__ import annotations

from ..actions import MVOIP_ACTIONS
from ..facts import CARRIER_COUNTRY
from ..model import Request, Verdict
from .base import Rule
from .params import Param, string_set, upper_code


class RegulationRule(Rule):
    family = "regulation"
    vetoes = frozenset({"carrier"})
    default_countries: frozenset[str] = frozenset()
    statement = ""

    params = {
        "countries": Param(
            string_set(upper_code(2, "ISO 3166 country")),
            None,
            "carrier countries where the law applies",
        ),
    }

    def prepare(self) -> None:
        if self.countries is None:
            self.countries = self.default_countries
        self._applies = self.allow(self.statement, self.type)
        self._country_unknown = self.no_opinion(
            "Carrier country unknown, so this regulation is not applied.", "country_unknown"
        )

    def evaluate(self, request: Request) -> Verdict | None:
        country = request.facts.get(CARRIER_COUNTRY)
        if country in self.countries:
            return self._applies
        if country is None:
            return self._country_unknown
        return None


class Fcc2010NoBlocking(RegulationRule):
    """US FCC 2010 Open Internet rules, mobile "No Blocking": a mobile broadband provider
    may not block applications that compete with its voice or video telephony."""

    type_name = "fcc_2010_no_blocking"
    default_actions = MVOIP_ACTIONS
    default_countries = frozenset({"US"})
    statement = (
        "FCC 2010 Open Internet rules (No Blocking): a US mobile carrier may not block "
        "applications that compete with its voice or video telephony."
    )


class Nl74a(RegulationRule):
    """Dutch Telecommunications Act art. 7.4a (2012): providers may not block or slow
    down internet services and applications — any action, not only calls."""

    type_name = "nl_7_4a"
    default_countries = frozenset({"NL"})
    statement = (
        "Dutch Telecommunications Act art. 7.4a: internet access providers may not block "
        "or slow down internet services and applications."
    )
