"""The limits on what remote people make the bridge create (pure logic; the end-to-end
tests with a real Prosody are in test_e2e_xmpp.py and test_e2e_xmpp_limits.py)."""

from __future__ import annotations

import pytest

from anywhere.plugins.groups import limits
from anywhere.plugins.groups.connector import Refused
from anywhere.plugins.groups.limits import RemoteLimits, address_and_domain


def test_addresses_and_domains_of_people_and_room_occupants():
    assert address_and_domain("bob@example.org") == ("bob@example.org", "example.org")
    assert address_and_domain("room@conf.example.org/Nick/x") == (
        "room@conf.example.org",
        "conf.example.org",
    )


def test_counts_past_the_limit_are_refused_naming_the_setting():
    checker = RemoteLimits(dict(limits.DEFAULTS, direct_chats_per_address=2))
    checker.check("direct_chats", "bob@example.org", (1, 1))
    with pytest.raises(Refused, match="limit of 2 direct chats per address"):
        checker.check("direct_chats", "bob@example.org", (2, 2))
    with pytest.raises(Refused, match="groups.limits.ghosts_per_domain"):
        checker.check("ghosts", "x@example.org", (0, limits.DEFAULTS["ghosts_per_domain"]))


def test_new_chats_and_ghosts_are_rate_limited_per_address_and_per_domain(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    checker = RemoteLimits(
        dict(limits.DEFAULTS, new_per_minute_per_address=3, new_per_minute_per_domain=5)
    )
    for _ in range(3):
        checker.check("ghosts", "a@spam.example", (0, 0))
    with pytest.raises(Refused, match="too fast.*new_per_minute_per_address"):
        checker.check("ghosts", "a@spam.example", (0, 0))
    checker.check("ghosts", "b@spam.example", (0, 0))
    checker.check("ghosts", "c@spam.example", (0, 0))
    with pytest.raises(Refused, match="new_per_minute_per_domain"):
        checker.check("ghosts", "d@spam.example", (0, 0))
    checker.check("ghosts", "d@other.example", (0, 0))  # another domain has its own
    now[0] += 60 / 5  # one more for the domain, one for the address
    checker.check("ghosts", "d@spam.example", (0, 0))
    with pytest.raises(Refused):
        checker.check("ghosts", "e@spam.example", (0, 0))
