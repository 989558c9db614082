"""The facts rules read from :attr:`anywhere.policy.model.Request.facts` — the one place they are
named.

Fact providers (hooks in the bridge, a subscriber directory, the Synapse module) gather
them before the engine decides; rules never fetch anything. A missing fact means
"unknown": each rule documents what it does then (usually: no opinion). Plugins may add
facts of their own; prefix their names with the plugin's name (``myplugin_score``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    name: str
    kind: str
    description: str


# --- carrier: who the subscriber is with, on which plan, on which network now ---
CARRIER = "carrier"
"""Name of the mobile carrier of the actor's subscription (``"SKT"``, ``"AT&T"``)."""
CARRIER_COUNTRY = "carrier_country"
"""ISO 3166-1 alpha-2 country of that carrier, upper case (``"KR"``, ``"US"``, ``"NL"``);
regulation rules apply by this country."""
PLAN_PRICE = "plan_price"
"""Monthly price of the subscriber's plan, a number in :data:`PLAN_CURRENCY`."""
PLAN_CURRENCY = "plan_currency"
"""ISO 4217 code of :data:`PLAN_PRICE` (``"KRW"``)."""
NETWORK = "network"
"""The network the actor is on right now: one of :data:`NETWORK_TYPES`, reported by the
client (account data / state event) or with ``!network``. Anything but ``wifi`` is mobile
data."""
MVOIP_MB_USED = "mvoip_mb_used_this_month"
"""Megabytes of mobile data the actor used for VoIP calls this calendar month."""

# --- identity ---
VERIFIED_METHODS = "verified_methods"
"""The ways the actor's identity is verified: a collection of
:data:`VERIFICATION_METHODS` (empty or missing: not verified)."""
DAILY_ACTIVE_USERS = "daily_active_users"
"""How many people used the service in the last 24 hours, counted by the bridge."""
PUBLIC_INSTITUTION = "public_institution"
"""True when the room (or service) the action happens in is run by a public
institution; the ``public_institution`` scope option matches on it."""

# --- content: what kind of media a shared file is, by three independent looks ---
MEDIA_KIND_SNIFFED = "media_kind_sniffed"
"""Kind found from the file's content (magic bytes): one of :data:`MEDIA_KINDS`, or a
collection of them for a folder."""
MEDIA_KIND_EXTENSION = "media_kind_extension"
"""Kind suggested by the file name's extension (same values)."""
MEDIA_KIND_DECLARED = "media_kind_declared"
"""Kind from the declared MIME type (same values)."""
MEDIA_KIND_FACTS = (MEDIA_KIND_SNIFFED, MEDIA_KIND_EXTENSION, MEDIA_KIND_DECLARED)

# --- vocabularies ---
WIFI = "wifi"
NETWORK_TYPES = ("wifi", "3g", "lte", "5g")
MOBILE_NETWORKS = frozenset(NETWORK_TYPES) - {WIFI}
VERIFICATION_METHODS = ("email", "msisdn", "code")
"""``email``/``msisdn``: a 3PID verified by the homeserver; ``code``: a one-time code sent
by the bot (``!verify phone NUMBER`` then ``!verify code CODE``)."""
MEDIA_KINDS = ("audio", "video", "image", "document", "archive", "other")

FACTS: tuple[Fact, ...] = (
    Fact(CARRIER, "string", "mobile carrier of the actor's subscription"),
    Fact(CARRIER_COUNTRY, "ISO country code", "country of that carrier"),
    Fact(PLAN_PRICE, "number", "monthly plan price"),
    Fact(PLAN_CURRENCY, "ISO currency code", "currency of the plan price"),
    Fact(NETWORK, "wifi | 3g | lte | 5g", "network the actor is on now"),
    Fact(MVOIP_MB_USED, "number (MB)", "mobile data used for calls this month"),
    Fact(VERIFIED_METHODS, "list of email | msisdn | code", "how the actor is verified"),
    Fact(DAILY_ACTIVE_USERS, "integer", "people who used the service in the last 24 h"),
    Fact(PUBLIC_INSTITUTION, "boolean", "the room belongs to a public institution"),
    Fact(MEDIA_KIND_SNIFFED, "media kind(s)", "kind of a shared file, from its content"),
    Fact(MEDIA_KIND_EXTENSION, "media kind(s)", "kind of a shared file, from its name"),
    Fact(MEDIA_KIND_DECLARED, "media kind(s)", "kind of a shared file, from its MIME type"),
)
"""Every built-in fact, in the order ``!policy explain`` shows them."""

FACT_NAMES = frozenset(f.name for f in FACTS)


def is_public_institution(patterns: Iterable[str], user_id: str, room_id: str | None) -> bool:
    """The :data:`PUBLIC_INSTITUTION` fact: ``room_id`` is one of ``patterns`` (room ids,
    matched exactly) or ``user_id`` matches one of them (user ids or globs such as
    ``@*:ministry.example``)."""
    for pattern in patterns:
        if room_id and pattern == room_id:
            return True
        if fnmatch.fnmatchcase(user_id, pattern):
            return True
    return False
