"""``plugins.settings.calls``: defaults and the checks that name the wrong key."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from anywhere.bridge import ConfigSection
from anywhere.bridge.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    # Local addresses ICE gathers host candidates on; empty = every non-loopback address.
    "ice_addresses": [],
    # Extra STUN/TURN servers: [{urls: [...], username: ..., credential: ...}].
    "ice_servers": [],
    # Also ask the homeserver (/voip/turnServer) for its TURN server, as Element does.
    "homeserver_turn": True,
    # Calls one bridge process carries at once; further invites are refused as busy.
    "max_calls": 20,
    # Calls one person may be in at once (so nobody takes every line); beyond: busy.
    "max_calls_per_person": 2,
    # Longest a call may last once connected, in seconds (then the bridge hangs up).
    "max_call_seconds": 4 * 3600,
    # Longest echo/quality test call, in seconds.
    "echo_max_seconds": 300,
    # Seconds to wait for media to connect before hanging up with ice_failed.
    "connect_timeout": 30,
    # Greeting tone that starts every call (Hz, milliseconds).
    "greeting_hz": 880,
    "greeting_ms": 400,
    # Longest voice memo, in seconds.
    "memo_max_seconds": 60,
    # Which mode answers a call to the bot: the first rule whose room and caller match
    # ({room: "!id:server", caller: "@user:server" (* matches any characters), mode:
    # name}, room and caller optional); echo when none does. Modes are the built-in
    # echo and memo, and those other plugins give (anywhere_calls_modes).
    "bot_modes": [],
}

#: The keys of one ``bot_modes`` rule.
BOT_MODE_KEYS = ("room", "caller", "mode")


def _positive(section: dict[str, Any], prefix: str, key: str, *, maximum: float) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= maximum:
        raise ConfigError(f"{prefix}.{key}", f"a number above 0 and at most {maximum}", value)


def validate(section: dict[str, Any], prefix: str) -> None:
    addresses = section["ice_addresses"]
    if not isinstance(addresses, list):
        raise ConfigError(f"{prefix}.ice_addresses", "a list of IP addresses", addresses)
    for i, address in enumerate(addresses):
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise ConfigError(
                f"{prefix}.ice_addresses[{i}]",
                "an IP address such as 127.0.0.1 or 192.0.2.10",
                address,
                "leave the list empty to use every non-loopback address",
            ) from None
    servers = section["ice_servers"]
    if not isinstance(servers, list):
        raise ConfigError(
            f"{prefix}.ice_servers", "a list of {urls, username, credential}", servers
        )
    for i, server in enumerate(servers):
        urls = server.get("urls") if isinstance(server, dict) else None
        if isinstance(urls, str):
            server["urls"] = urls = [urls]
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:")) for u in urls
        ):
            raise ConfigError(
                f"{prefix}.ice_servers[{i}].urls",
                "stun:, turn: or turns: URLs (e.g. turn:turn.example.org:3478?transport=udp)",
                urls,
            )
    if not isinstance(section["homeserver_turn"], bool):
        raise ConfigError(f"{prefix}.homeserver_turn", "true or false", section["homeserver_turn"])
    _positive(section, prefix, "max_calls", maximum=10_000)
    _positive(section, prefix, "max_calls_per_person", maximum=10_000)
    _positive(section, prefix, "max_call_seconds", maximum=7 * 24 * 3600)
    _positive(section, prefix, "echo_max_seconds", maximum=7 * 24 * 3600)
    _positive(section, prefix, "connect_timeout", maximum=600)
    _positive(section, prefix, "greeting_hz", maximum=20_000)
    _positive(section, prefix, "greeting_ms", maximum=10_000)
    _positive(section, prefix, "memo_max_seconds", maximum=3600)
    _bot_modes(section["bot_modes"], f"{prefix}.bot_modes")


def _bot_modes(rules: Any, prefix: str) -> None:
    """The shape of ``bot_modes``; which mode names exist is known only once every plugin
    has given its modes (:func:`check_bot_modes`, at start-up)."""
    example = '[{room: "!id:server", caller: "@user:server", mode: name}]'
    if not isinstance(rules, list):
        raise ConfigError(prefix, f"a list of rules such as {example}", rules)
    for i, rule in enumerate(rules):
        where = f"{prefix}[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(where, "a mapping with room, caller and mode", rule)
        extra = sorted(set(rule) - set(BOT_MODE_KEYS))
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", "one of room, caller, mode", extra[0])
        mode = rule.get("mode")
        if not isinstance(mode, str) or not mode:
            raise ConfigError(f"{where}.mode", "the name of a call mode, such as echo", mode)
        for key, sigil, what in (("room", "!", "a room ID"), ("caller", "@", "a user ID")):
            value = rule.get(key)
            if value is not None and not (isinstance(value, str) and value.startswith(sigil)):
                raise ConfigError(
                    f"{where}.{key}", f"{what} ({sigil}...:server)", value, "or leave it out"
                )


def check_bot_modes(rules: list[dict[str, Any]], known: Iterable[str], prefix: str) -> None:
    """Refuse a ``bot_modes`` rule naming a mode nobody gives, naming the modes that exist
    (``conference`` answers only its conference users, never the bot)."""
    usable = sorted(set(known) - {"conference"})
    for i, rule in enumerate(rules):
        if rule["mode"] not in usable:
            hint = (
                "a conference answers calls to its own conference user (!call conference)"
                if rule["mode"] == "conference"
                else "enable the plugin that gives it, or check its spelling"
            )
            raise ConfigError(
                f"{prefix}[{i}].mode", f"one of {', '.join(usable)}", rule["mode"], hint
            )


SECTION = ConfigSection(defaults=DEFAULTS, validate=validate)
