"""The Synapse module's copy of the bridge's facts, and the exchange that keeps it fresh.

No fact is fetched on an event's path: the module keeps every person's facts in memory
(:class:`FactStore`) and a background exchange with the bridge (``POST
{bridge_url}/_anywhere/policy/sync``, :class:`FactSync`) brings the changes every
``facts_refresh_seconds``. The same exchange carries what the module has to tell the
bridge: the local people it saw active (daily active users, per UTC day) and the
decisions it made that belong in the audit (refusals, and dry-run verdicts) — the bridge
then tells a refused person why, in their direct chat with the bot.

Staleness (documented in docs/policy.md): while the bridge answers, a change made in the
bridge reaches the module within ``facts_refresh_seconds`` plus one exchange. When the
bridge stops answering, the facts last received are used for ``facts_max_age_seconds``
after they were received; past that they are *unavailable* and actions whose rules need
them are decided as ``fail_open`` says. A failed exchange opens a circuit breaker: the
next try waits ``breaker_seconds``, so a hung bridge costs one ``timeout_seconds`` per
breaker period, in the background — never an event's wait. (Before the first exchange
succeeds, a bridge that refuses connections — not started yet — is tried again every
``facts_refresh_seconds``.)

Pure: no I/O, no Synapse, an injectable clock; :mod:`anywhere.policy.synapse_module` does the HTTP.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .facts import DAILY_ACTIVE_USERS, PUBLIC_INSTITUTION, is_public_institution

logger = logging.getLogger("anywhere.policy.synapse_module")

SYNC_PATH = "/_anywhere/policy/sync"
MAX_OUTBOX = 10_000
"""Decisions waiting for the bridge beyond this many are dropped (oldest first) and
counted, so a bridge that stays down cannot grow Synapse's memory without bound."""


class SyncFailed(Exception):
    """The exchange with the bridge failed (unreachable, timed out, bad answer)."""


def utc_day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


@dataclass
class Outbox:
    """What the module has to tell the bridge at the next exchange."""

    active: dict[str, set[str]] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "active": {day: sorted(users) for day, users in self.active.items()},
            "decisions": list(self.decisions),
            "dropped_decisions": self.dropped,
        }

    def empty(self) -> bool:
        return not self.active and not self.decisions and not self.dropped


class FactStore:
    """Every person's facts as the bridge last sent them, the module's own count of
    today's active people, and what waits to be sent to the bridge."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self.max_age = max_age
        self._clock = clock
        self.users: dict[str, Mapping[str, Any]] = {}
        self.cursor: str | None = None
        self.received_at: float | None = None
        self.bridge_daily_active_users: int | None = None
        self.public_institutions: tuple[str, ...] = ()
        self._today = ""
        self._active_today: set[str] = set()
        self.outbox = Outbox()

    # ---------------------------------------------------------------- reading

    def fresh(self) -> bool:
        """Whether the facts were received less than ``max_age`` seconds ago."""
        return self.received_at is not None and self._clock() - self.received_at < self.max_age

    def daily_active_users(self) -> int | None:
        """The bridge's count, or the module's own count of today if that is higher (the
        module sees every local person's activity; the bridge may not have it yet)."""
        own = len(self._active_today) if self._today == utc_day(self._clock()) else 0
        bridge = self.bridge_daily_active_users
        if bridge is None:
            return own or None
        return max(bridge, own)

    def global_facts(self, actor: str, room_id: str | None) -> dict[str, Any]:
        """The facts that are not about the person: known even with the bridge down."""
        facts: dict[str, Any] = {
            PUBLIC_INSTITUTION: is_public_institution(self.public_institutions, actor, room_id)
        }
        users = self.daily_active_users()
        if users is not None:
            facts[DAILY_ACTIVE_USERS] = users
        return facts

    def facts_for(self, actor: str, room_id: str | None) -> dict[str, Any]:
        """Everything known about ``actor`` (a fresh dict the caller may keep)."""
        facts = dict(self.users.get(actor, ()))
        facts.update(self.global_facts(actor, room_id))
        return facts

    # ---------------------------------------------------------------- writing

    def saw_active(self, user_id: str) -> None:
        """Count ``user_id`` as active today (UTC); queued for the bridge once a day."""
        day = utc_day(self._clock())
        if day != self._today:
            self._today, self._active_today = day, set()
        if user_id in self._active_today:
            return
        self._active_today.add(user_id)
        self.outbox.active.setdefault(day, set()).add(user_id)

    def queue_decision(self, entry: dict[str, Any]) -> None:
        decisions = self.outbox.decisions
        decisions.append(entry)
        if len(decisions) > MAX_OUTBOX:
            del decisions[0]
            self.outbox.dropped += 1

    def take_outbox(self) -> Outbox:
        outbox, self.outbox = self.outbox, Outbox()
        return outbox

    def give_back(self, outbox: Outbox) -> None:
        """An exchange failed: what it carried goes back in front of what came since."""
        merged = Outbox(dropped=outbox.dropped + self.outbox.dropped)
        for source in (outbox, self.outbox):
            for day, users in source.active.items():
                merged.active.setdefault(day, set()).update(users)
        merged.decisions = outbox.decisions + self.outbox.decisions
        excess = len(merged.decisions) - MAX_OUTBOX
        if excess > 0:
            del merged.decisions[:excess]
            merged.dropped += excess
        self.outbox = merged

    def apply(self, answer: Mapping[str, Any]) -> None:
        """Put the bridge's answer in force; raises :class:`SyncFailed` if malformed."""
        users = answer.get("users")
        cursor = answer.get("cursor")
        if not isinstance(users, dict) or not isinstance(cursor, str):
            raise SyncFailed('the bridge\'s answer has no "users" object or "cursor"')
        if not all(isinstance(v, dict) for v in users.values()):
            raise SyncFailed("the bridge's answer has a person whose facts are not an object")
        if answer.get("full"):
            self.users = dict(users)
        else:
            self.users.update(users)
        self.cursor = cursor
        dau = answer.get("daily_active_users")
        if isinstance(dau, int) and not isinstance(dau, bool):
            self.bridge_daily_active_users = dau
        patterns = answer.get("public_institutions")
        if isinstance(patterns, list):
            self.public_institutions = tuple(p for p in patterns if isinstance(p, str))
        self.received_at = self._clock()


class FactSync:
    """When to exchange with the bridge, and what to do with its answer: every
    ``refresh`` seconds while it answers; after a failure, not before ``breaker``
    seconds (the circuit breaker). One exchange at a time.

    Until a first exchange succeeds (Synapse usually starts before the bridge), one that
    failed at once (connection refused) is retried after ``refresh`` seconds: there are
    no facts to keep using yet, and it cost nothing; one that timed out opens the breaker."""

    def __init__(
        self,
        store: FactStore,
        *,
        refresh: float,
        breaker: float,
        clock: Callable[[], float] = time.time,
        log_every: float = 60.0,
    ) -> None:
        self.store = store
        self.refresh = refresh
        self.breaker = breaker
        self._clock = clock
        self._next = float("-inf")
        self.in_flight = False
        self.failures = 0
        self.exchanges = 0
        self.last_error: str | None = None
        self._log_every = log_every
        self._next_log = float("-inf")
        #: A random id of this module instance, so the bridge can tell instances apart.
        self.instance = secrets.token_hex(6)

    def due(self) -> bool:
        return not self.in_flight and self._clock() >= self._next

    def begin(self, ruleset_version: str) -> tuple[dict[str, Any], Outbox]:
        """The request body of an exchange, and the outbox it carries."""
        self.in_flight = True
        outbox = self.store.take_outbox()
        body = {
            "cursor": self.store.cursor,
            "instance": self.instance,
            "ruleset_version": ruleset_version,
            **outbox.payload(),
        }
        return body, outbox

    def succeeded(self, answer: Any, outbox: Outbox) -> None:
        self.in_flight = False
        try:
            if not isinstance(answer, Mapping):
                raise SyncFailed("the bridge's answer is not a JSON object")
            self.store.apply(answer)
        except SyncFailed as exc:
            self.failed(exc, outbox)
            return
        self.exchanges += 1
        if self.failures:
            logger.warning(
                "Anywhere policy: facts from the bridge again after %d failed exchanges",
                self.failures,
            )
        self.failures = 0
        self.last_error = None
        self._next = self._clock() + self.refresh

    def failed(self, exc: BaseException, outbox: Outbox, *, hung: bool = True) -> None:
        """The exchange failed: keep what it carried, open the breaker, log (at most once
        per ``log_every`` seconds). ``hung``: it failed by timing out (not at once, like a
        refused connection): that costs a timeout, so the breaker opens even before any
        facts were received."""
        self.in_flight = False
        self.store.give_back(outbox)
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        now = self._clock()
        opens = hung or self.store.received_at is not None
        wait = self.breaker if opens else self.refresh
        self._next = now + wait
        if now >= self._next_log:
            self._next_log = now + self._log_every
            logger.warning(
                "Anywhere policy: no facts from the bridge (%s); next try in %gs; facts "
                "received %s are used until they are %gs old, then fail_open decides",
                self.last_error,
                wait,
                "never"
                if self.store.received_at is None
                else f"{now - self.store.received_at:.0f}s ago",
                self.store.max_age,
            )
