# acme_roaming/rules.py
from anywhere.policy import Param, Request, Rule, Verdict
from anywhere.policy.actions import MVOIP_ACTIONS
from anywhere.policy.rules.params import string_set

ROAMING = "acme_roaming"  # a fact of our own: True while the person is roaming


class RoamingBlock(Rule):
    """Blocks calls while roaming, except in the countries listed."""

    type_name = "acme_roaming_block"
    family = "carrier"  # so that regulation rules can veto it
    default_actions = MVOIP_ACTIONS  # call.place, call.answer
    params = {
        "allowed_countries": Param(string_set(), frozenset(), "countries where calls are fine"),
    }

    def prepare(self) -> None:
        # Called once after the parameters are set: precompute constant verdicts.
        self._not_roaming = self.allow("Not roaming.", "not_roaming")

    def evaluate(self, request: Request) -> Verdict | None:
        if not request.facts.get(ROAMING):
            return self._not_roaming
        if request.facts.get("carrier_country") in self.allowed_countries:
            return None  # nothing to say
        return self.deny(
            "Calls are blocked while roaming. Connect to Wi-Fi and send `!network wifi`.",
            "acme_roaming",
        )
