"""Limits on what people of other networks can make the bridge create: direct chats
(portal rooms) and ghost users, counted per remote address and per remote domain, and a
rate limit on new ones (``plugins.settings.groups.limits``).

A remote address is what a person is known by on their network (``bob@example.org``);
a room occupant the network shows only by nickname (``room@conference.example.org/nick``)
is counted against the room's address. The domain is the address's server part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from anywhere.bridge.errors import ConfigError

from .connector import Refused

#: plugins.settings.groups.limits, with their defaults (documented in docs/networks.md)
DEFAULTS: dict[str, Any] = {
    # direct chats one remote address / one remote domain may have open with Matrix people
    "direct_chats_per_address": 20,
    "direct_chats_per_domain": 200,
    # ghost users per remote address (occupants of one room known only by nickname
    # count against the room) and per remote domain
    "ghosts_per_address": 100,
    "ghosts_per_domain": 1000,
    # new direct chats and ghosts (together) per address and per domain in any minute
    # (a burst of that size, then that many a minute)
    "new_per_minute_per_address": 10,
    "new_per_minute_per_domain": 60,
}


def address_and_domain(remote_id: str) -> tuple[str, str]:
    """``(address, domain)`` a remote ID is counted against."""
    address = remote_id.split("/", 1)[0]
    domain = address.rsplit("@", 1)[-1]
    return address, domain


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class RemoteLimits:
    """Counts and rate of what remote people create; :meth:`check` raises
    :class:`~anywhere.plugins.groups.connector.Refused` saying which limit was reached."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(self, what: str, remote_id: str, counts: tuple[int, int]) -> None:
        """May ``remote_id`` have one more ``what`` (``direct_chats`` or ``ghosts``)?
        ``counts``: how many it has now, for its address and its domain. Takes one from
        the rate limit when it may."""
        address, domain = address_and_domain(remote_id)
        for scope, key, count in (("address", address, counts[0]), ("domain", domain, counts[1])):
            limit = self.settings[f"{what}_per_{scope}"]
            if count >= limit:
                raise Refused(
                    f"{key} has reached the bridge's limit of {limit} "
                    f"{what.replace('_', ' ')} per {scope} "
                    f"(plugins.settings.groups.limits.{what}_per_{scope})"
                )
        now = time.monotonic()
        buckets = []
        for scope, key in (("address", address), ("domain", domain)):
            rate = self.settings[f"new_per_minute_per_{scope}"]
            bucket = self._buckets.setdefault((scope, key), _Bucket(float(rate), now))
            bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60)
            bucket.updated = now
            if bucket.tokens < 1:
                raise Refused(
                    f"{key} is creating chats and users on the bridge too fast (more than "
                    f"{rate} a minute, plugins.settings.groups.limits."
                    f"new_per_minute_per_{scope}); try again in a minute"
                )
            buckets.append(bucket)
        for bucket in buckets:
            bucket.tokens -= 1
        if len(self._buckets) > 10_000:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they hold nothing worth remembering)."""
        for key, bucket in list(self._buckets.items()):
            rate = self.settings[f"new_per_minute_per_{key[0]}"]
            if bucket.tokens + (now - bucket.updated) * rate / 60 >= rate:
                del self._buckets[key]


def validate(section: dict[str, Any], prefix: str) -> None:
    for key, value in section.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{prefix}.{key}", "a positive whole number", value)
