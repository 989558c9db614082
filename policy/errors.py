"""Errors an operator can act on: each names the config key, what was found there and
what would be accepted.

The policy package does not import the bridge (it also runs inside Synapse as a module),
so it has its own error type; its message has the same shape as
:class:`anywhere.bridge.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MISSING = object()
"""Marks a :class:`Problem` without a found value (a required key that is absent)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a rule set: ``key`` is the path (``policy.rules[2].mode``)."""

    key: str
    expected: str
    found: object = MISSING
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.key}: expected {self.expected}"
        if self.found is not MISSING:
            text += f", found {self.found!r}"
        if self.hint:
            text += f" — {self.hint}"
        return text


class PolicyConfigError(ValueError):
    """The rule set (or a cases file) is invalid; ``problems`` lists every mistake found.

    The message is one line per problem, so an operator can fix them all in one go.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(
        cls, key: str, expected: str, found: object = MISSING, hint: str = ""
    ) -> PolicyConfigError:
        return cls([Problem(key, expected, found, hint)])
