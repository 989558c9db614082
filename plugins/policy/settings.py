"""The policy plugin's config section, ``plugins.settings.policy``."""

from __future__ import annotations

from typing import Any

from anywhere.bridge.config import PLACEHOLDER, ConfigSection
from anywhere.bridge.errors import ConfigError

SENDERS = ("log", "file", "http")
NETWORK_SOURCES = ("reported", "providers")

DEFAULTS: dict[str, Any] = {
    # YAML file with the rule list (docs/policy.md); relative to the config file. Empty:
    # no rules, everything allowed. Reloaded by `!policy reload` and SIGHUP.
    "rules_file": "",
    # YAML file mapping user IDs to their subscription: carrier, carrier_country,
    # plan_price, plan_currency. Reloaded with the rules.
    "subscribers_file": "",
    # Rooms (IDs) and people (IDs, or globs such as "@*:ministry.example") of public
    # institutions: the `public_institution` fact is true for them.
    "public_institutions": [],
    # Where the `network` fact comes from: "reported" (people say it with `!network` or an
    # org.anywhere.network state event; self-reported, see docs/policy.md) or "providers"
    # (only anywhere_policy_gather_facts plugins, e.g. the carrier's own API; `!network` is off).
    "network_source": "reported",
    "audit_retention_days": 90,
    # A person refused by the Synapse module is told why in their direct chat with the
    # bot, once per rule, reason code and this many minutes.
    "refusal_notice_minutes": 60,
    "verification": {
        # How one-time codes reach people: log (the bridge's log), file (one JSON line per
        # code in `outbox`), http (POST {"to": ..., "text": ...} to `http_url`).
        "sender": "log",
        "outbox": "",
        "http_url": "",
        "http_token": "",
        "default_country_code": "82",
        "code_ttl": 600,
        "max_attempts": 5,
        "max_sends": 3,
        "retention_days": 365,
        # Secret key for hashing phone numbers (`anywhere init` writes a random one); empty
        # falls back to a key derived from appservice.hs_token (a warning says why not).
        "salt": "",
        # How many accounts one phone number may verify (real-name systems: one).
        "accounts_per_number": 1,
        # An admin access token lets the bridge read people's verified email addresses
        # and phone numbers (3PIDs) from Synapse's admin API.
        "homeserver_admin_token": "",
    },
}


def validate(section: dict[str, Any], prefix: str) -> None:
    verification = section["verification"]
    if verification["sender"] not in SENDERS:
        raise ConfigError(
            f"{prefix}.verification.sender", " or ".join(SENDERS), verification["sender"]
        )
    if verification["sender"] == "file" and not verification["outbox"]:
        raise ConfigError(f"{prefix}.verification.outbox", "a file path for sender: file", "")
    if verification["sender"] == "http" and not str(verification["http_url"]).startswith(
        ("http://", "https://")
    ):
        raise ConfigError(
            f"{prefix}.verification.http_url", "the SMS gateway's URL", verification["http_url"]
        )
    if verification["salt"] == PLACEHOLDER:
        raise ConfigError(
            f"{prefix}.verification.salt",
            "a random secret",
            PLACEHOLDER,
            "run `anywhere init` to generate one, or set it yourself",
        )
    if not isinstance(verification["salt"], str):
        raise ConfigError(f"{prefix}.verification.salt", "a string", verification["salt"])
    for key in ("code_ttl", "max_attempts", "max_sends", "retention_days", "accounts_per_number"):
        value = verification[key]
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{prefix}.verification.{key}", "a positive whole number", value)
    if section["network_source"] not in NETWORK_SOURCES:
        raise ConfigError(
            f"{prefix}.network_source", " or ".join(NETWORK_SOURCES), section["network_source"]
        )
    notice = section["refusal_notice_minutes"]
    if isinstance(notice, bool) or not isinstance(notice, int) or notice <= 0:
        raise ConfigError(f"{prefix}.refusal_notice_minutes", "a positive whole number", notice)
    if not isinstance(section["audit_retention_days"], int) or section["audit_retention_days"] <= 0:
        raise ConfigError(
            f"{prefix}.audit_retention_days",
            "a positive whole number",
            section["audit_retention_days"],
        )


SECTION = ConfigSection(DEFAULTS, validate)
