"""Which people's facts changed, for the Synapse module's exchanges (plugins/policy/
module_link.py): the fact gatherer touches it, the link reads it."""

from __future__ import annotations

import secrets


class FactsFeed:
    """Which people's facts changed since a cursor (``<run>:<sequence>``): each change
    bumps a sequence number; a cursor from another run (or none) means "everything"."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(6)
        self.sequence = 0
        self._changed: dict[str, int] = {}

    @property
    def cursor(self) -> str:
        return f"{self.run}:{self.sequence}"

    def touch(self, user_id: str) -> None:
        self.sequence += 1
        self._changed[user_id] = self.sequence

    def reset(self) -> None:
        """Everything changed (e.g. the subscriber directory was reloaded)."""
        self.run = secrets.token_hex(6)
        self.sequence = 0
        self._changed.clear()

    def changed_since(self, cursor: str | None) -> list[str] | None:
        """The people whose facts changed after ``cursor``; None when the module needs
        everything."""
        run, _, sequence = (cursor or "").partition(":")
        if run != self.run or not sequence.isdigit():
            return None
        since = int(sequence)
        return [user for user, seq in self._changed.items() if seq > since]
