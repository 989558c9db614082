"""Identity rules: whether a person must verify who they are before acting.

Modelled on Korea's limited real-name system (2007–2012): services with at least
100,000 daily users had to verify identity before people could post; after the
Constitutional Court struck it down it still applied to public institutions — use
``scope: {public_institution: true}`` on ``require_verified`` for that.
"""

from __future__ import annotations

from ..actions import GROUP_CREATE, ROOM_INVITE, ROOM_POST
from ..facts import DAILY_ACTIVE_USERS, VERIFICATION_METHODS, VERIFIED_METHODS
from ..model import Request, Verdict
from .base import Rule
from .params import Param, one_of, positive_int, string_set

_HOW_TO_VERIFY = {
    "code": "send `!verify phone NUMBER` to the bot, then `!verify code CODE` with the code "
    "you receive",
    "msisdn": "have a phone number verified on your account by your homeserver (ask its "
    "operator: most homeservers cannot send the text message themselves)",
    "email": "have an email address verified on your account by your homeserver (in your "
    "account settings if it offers that, else ask its operator)",
}
_METHOD_LABELS = {"code": "one-time code", "msisdn": "phone number", "email": "email"}


def how_to_verify(methods: frozenset[str]) -> str:
    """``"send `!verify phone NUMBER` ..., or add and verify ..."`` for ``methods``."""
    steps = [_HOW_TO_VERIFY[m] for m in VERIFICATION_METHODS if m in methods]
    return ", or ".join(steps)


class NoVerification(Rule):
    """The default: nobody has to verify."""

    type_name = "none"
    family = "identity"

    def prepare(self) -> None:
        self._allowed = self.allow("No identity verification required.", "no_verification_required")

    def needs_facts(self, request: Request) -> bool:
        return False

    def evaluate(self, request: Request) -> Verdict | None:
        return self._allowed


class RequireVerified(Rule):
    """For its actions (default ``group.create``, ``room.post`` and ``room.invite`` —
    every way of posting and of bringing people in: a room made with only the bot is
    exempt, inviting anyone else into it is not), the actor must be verified by one of
    ``methods``; otherwise the outcome is ``require_verification`` with instructions."""

    type_name = "require_verified"
    family = "identity"
    default_actions = frozenset({GROUP_CREATE, ROOM_POST, ROOM_INVITE})
    params = {
        "methods": Param(
            string_set(one_of(*VERIFICATION_METHODS)),
            frozenset(VERIFICATION_METHODS),
            "verification methods accepted (any one suffices)",
        ),
    }

    def prepare(self) -> None:
        self._verified_by = {
            m: self.allow(f"Identity verified ({_METHOD_LABELS[m]}).", "verified")
            for m in self.methods
        }
        self._must_verify = self.require_verification(
            f"You need to verify your identity first: {how_to_verify(self.methods)}.",
            "verification_required",
        )

    def evaluate(self, request: Request) -> Verdict | None:
        verified = request.facts.get(VERIFIED_METHODS) or ()
        if isinstance(verified, str):
            verified = (verified,)
        for method in verified:
            found = self._verified_by.get(method)
            if found is not None:
                return found
        return self._must_verify


class DailyUsersThreshold(RequireVerified):
    """``require_verified`` that applies only while the service has at least
    ``daily_active_users`` (default 100,000, the 2007 Korean law). Without the
    ``daily_active_users`` fact, ``when_unknown`` decides: ``skip`` (the default: no
    opinion — the count is known from the bridge and the Synapse module once anyone was
    active today) or ``require`` (as if the threshold were reached)."""

    type_name = "threshold"
    params = {
        **RequireVerified.params,
        "daily_active_users": Param(positive_int, 100_000, "a positive whole number of users"),
        "when_unknown": Param(
            one_of("skip", "require"), "skip", "skip or require when the count is unknown"
        ),
    }

    def prepare(self) -> None:
        super().prepare()
        self._below = self.no_opinion(
            f"Fewer than {self.daily_active_users:,} daily active users: verification is not "
            "required.",
            "below_threshold",
        )
        self._unknown = self.no_opinion(
            "Daily active users unknown, so the threshold is not applied.", "dau_unknown"
        )

    def needs_facts(self, request: Request) -> bool:
        """Below the threshold (or with the count unknown) the person's facts cannot
        change this rule's verdict."""
        users = request.facts.get(DAILY_ACTIVE_USERS)
        if users is None:
            return self.when_unknown == "require"
        return users >= self.daily_active_users

    def evaluate(self, request: Request) -> Verdict | None:
        users = request.facts.get(DAILY_ACTIVE_USERS)
        if users is None:
            if self.when_unknown == "require":
                return super().evaluate(request)
            return self._unknown
        if users < self.daily_active_users:
            return self._below
        return super().evaluate(request)
