"""Matrix ID namespaces claimed in the registration, and the overlap check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_REGEX_META = set(".^$*+?{}[]\\|()")


@dataclass(frozen=True)
class Namespace:
    regex: str
    exclusive: bool = True

    def literal_prefix(self) -> str:
        """The fixed text a matching ID must start with (used for the overlap check)."""
        prefix = []
        pattern = self.regex.removeprefix("^")
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if char == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                prefix.append(pattern[i + 1])
                i += 2
                continue
            if char in _REGEX_META:
                break
            prefix.append(char)
            i += 1
        return "".join(prefix)


@dataclass
class Namespaces:
    """IDs a plugin manages. ``users`` and ``aliases`` are regular expressions over full
    IDs (``@prefix_.*:example\\.org``, ``#prefix_.*:example\\.org``)."""

    users: list[Namespace] = field(default_factory=list)
    aliases: list[Namespace] = field(default_factory=list)
    rooms: list[Namespace] = field(default_factory=list)

    @classmethod
    def of(cls, users=(), aliases=(), rooms=()) -> Namespaces:
        def wrap(items):
            return [i if isinstance(i, Namespace) else Namespace(i) for i in items]

        return cls(wrap(users), wrap(aliases), wrap(rooms))


def user_regex(localpart_prefix: str, domain: str) -> str:
    return f"@{re.escape(localpart_prefix)}.*:{re.escape(domain)}"


def find_overlaps(claims: dict[str, Namespaces]) -> list[str]:
    """Describe every pair of namespaces (from different owners) that can match one ID.

    Two regexes overlap when one literal prefix starts with the other; that is what
    prefix-style namespaces (the only kind worth using) need.
    """
    problems = []
    owners = sorted(claims)
    for kind in ("users", "aliases", "rooms"):
        for i, first in enumerate(owners):
            for second in owners[i + 1 :]:
                for a in getattr(claims[first], kind):
                    for b in getattr(claims[second], kind):
                        pa, pb = a.literal_prefix(), b.literal_prefix()
                        if pa.startswith(pb) or pb.startswith(pa):
                            problems.append(
                                f"{kind} namespace {a.regex!r} of {first} overlaps "
                                f"{b.regex!r} of {second}"
                            )
    return problems
