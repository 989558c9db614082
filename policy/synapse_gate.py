"""The policy module's logic without Synapse: its config, the gate that decides with
the rules and the bridge's facts (cached), and the answer Synapse gets. Imported by
:mod:`policy.synapse_module` (see there for what the module does); importable and
testable without Synapse installed."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any
from urllib.parse import urlencode

from .actions import CALL_ANSWER, CALL_PLACE, GROUP_CREATE, ROOM_INVITE, ROOM_POST
from .engine import Engine
from .errors import PolicyConfigError
from .facts import PUBLIC_INSTITUTION
from .model import Decision, Request
from .rules import Rule
from .ruleset import load_ruleset
from .rulesfile import read_rules_file

logger = logging.getLogger(__name__)

EVENT_ACTIONS: Mapping[str, str] = {
    "m.call.invite": CALL_PLACE,
    "m.call.answer": CALL_ANSWER,
    "m.room.message": ROOM_POST,
    # In encrypted rooms Synapse only sees m.room.encrypted (messages and call events
    # alike): judged as posting, so identity rules cannot be bypassed by encryption.
    "m.room.encrypted": ROOM_POST,
    "m.sticker": ROOM_POST,
}
"""Event types checked by ``check_event_for_spam`` and the action each one is."""

FIELD_PREFIX = "org.anywhere.policy."
"""Prefix of the extra fields of a refusal's error JSON."""

FACTS_PATH = "/_anywhere/policy/facts"
FACTS_UNAVAILABLE = "policy_facts_unavailable"
"""Code of a refusal because the bridge could not be asked (``fail_open: false``)."""

_MAX_CACHED_FACTS = 10_000
UNAVAILABLE_LOG_SECONDS = 10.0
"""While the bridge cannot give facts, one warning per this many seconds."""


class ModuleConfigError(ValueError):
    """The module's config is wrong; raised as Synapse's ``ConfigError`` by
    :meth:`AnywherePolicyModule.parse_config`."""


class FactsUnavailable(Exception):
    """The bridge could not give the facts (unreachable, timed out, bad answer)."""


@dataclass(frozen=True)
class ModuleConfig:
    """The module's ``config:`` block, checked (see :meth:`from_dict`)."""

    rules_file: str
    bridge_url: str
    bridge_token: str
    facts_cache_seconds: float = 2.0
    fail_open: bool = False
    ignore_users: tuple[str, ...] = ()
    bridge_bot: str | None = None
    timeout_seconds: float = 5.0
    reload_check_seconds: float = 1.0
    rule_types: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> ModuleConfig:
        """Check a config mapping; raise :class:`ModuleConfigError` listing every
        problem (one line each)."""
        if not isinstance(raw, Mapping):
            raise ModuleConfigError(f"expected a mapping, found {type(raw).__name__}")
        known = set(cls.__dataclass_fields__)
        problems = [
            f"{key}: unknown option (known: {', '.join(sorted(known))})"
            for key in raw
            if key not in known
        ]
        values: dict[str, Any] = {}

        def text(key: str, required: bool) -> None:
            value = raw.get(key)
            if value is None:
                if required:
                    problems.append(f"{key}: required")
                return
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{key}: expected a non-empty string, found {value!r}")
                return
            values[key] = value.strip()

        def number(key: str, minimum: float) -> None:
            value = raw.get(key)
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                problems.append(f"{key}: expected a number >= {minimum}, found {value!r}")
                return
            values[key] = float(value)

        text("rules_file", True)
        text("bridge_url", True)
        text("bridge_token", True)
        text("bridge_bot", False)
        number("facts_cache_seconds", 0)
        number("timeout_seconds", 0.01)
        number("reload_check_seconds", 0)
        if "fail_open" in raw:
            if isinstance(raw["fail_open"], bool):
                values["fail_open"] = raw["fail_open"]
            else:
                problems.append(f"fail_open: expected true or false, found {raw['fail_open']!r}")
        url = values.get("bridge_url")
        if url is not None:
            if not url.startswith(("http://", "https://")):
                problems.append(f"bridge_url: expected an http(s) URL, found {url!r}")
            values["bridge_url"] = url.rstrip("/")
        ignore = raw.get("ignore_users")
        if ignore is not None:
            if isinstance(ignore, str):
                ignore = [ignore]
            if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
                problems.append(f"ignore_users: expected a list of regexes, found {ignore!r}")
            else:
                for index, pattern in enumerate(ignore):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        problems.append(f"ignore_users[{index}]: invalid regex {pattern!r}: {exc}")
                values["ignore_users"] = tuple(ignore)
        types = raw.get("rule_types")
        if types is not None:
            if not isinstance(types, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and ":" in v for k, v in types.items()
            ):
                problems.append(
                    "rule_types: expected a mapping of rule type names to "
                    f"'package.module:Class', found {types!r}"
                )
            else:
                values["rule_types"] = dict(types)
        if problems:
            raise ModuleConfigError("; ".join(problems))
        return cls(**values)

    def load_rule_types(self) -> dict[str, type[Rule]]:
        """Import the plugin rule types named in ``rule_types``."""
        loaded: dict[str, type[Rule]] = {}
        for name, location in self.rule_types.items():
            module_name, _, attr = location.partition(":")
            try:
                cls = getattr(import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ModuleConfigError(
                    f"rule_types.{name}: cannot import {location}: {exc}"
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Rule)):
                raise ModuleConfigError(f"rule_types.{name}: {location} is not a policy.Rule")
            loaded[name] = cls
        return loaded


@dataclass(frozen=True)
class PolicyAnswer:
    """What the module decided about one request."""

    allowed: bool
    outcome: str
    rule_id: str | None
    reason: str
    code: str
    decision_id: str | None = None
    ruleset_version: str | None = None
    decision: Decision | None = None

    @classmethod
    def from_decision(cls, decision: Decision) -> PolicyAnswer:
        return cls(
            allowed=decision.allowed,
            outcome=str(decision.outcome),
            rule_id=decision.rule_id,
            reason=decision.reason,
            code=decision.code,
            decision_id=decision.decision_id,
            ruleset_version=decision.ruleset_version,
            decision=decision,
        )

    def error_fields(self) -> dict[str, Any]:
        """The fields added to Synapse's error JSON (``error`` replaces its generic
        message, so every client shows the reason)."""
        where = f"policy rule {self.rule_id}" if self.rule_id else "policy"
        return {
            "error": f"{self.reason} ({where}: {self.code})",
            FIELD_PREFIX + "reason": self.reason,
            FIELD_PREFIX + "rule": self.rule_id,
            FIELD_PREFIX + "code": self.code,
            FIELD_PREFIX + "outcome": self.outcome,
            FIELD_PREFIX + "decision_id": self.decision_id,
        }


FactsFetcher = Callable[[str, str, "str | None"], Awaitable[Mapping[str, Any]]]
"""``await fetch(user_id, action, room_id)`` → the facts; raises :class:`FactsUnavailable`."""


class PolicyGate:
    """The module's logic without Synapse: rules from the file (reloaded when it
    changes), which events and users to check, facts gathered through ``fetch_facts``
    and cached, and the decision.

    Everything here runs on Synapse's reactor thread; ``fetch_facts`` is the only await.
    """

    def __init__(
        self,
        config: ModuleConfig,
        fetch_facts: FactsFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
        extra_types: Mapping[str, type[Rule]] | None = None,
    ) -> None:
        self.config = config
        self._fetch_facts = fetch_facts
        self._clock = clock
        self._extra_types = dict(extra_types or {})
        # The stamp first: a change while reading is then seen at the next check.
        self._file_stamp = _stamp(config.rules_file)
        rules, version = read_rules_file(config.rules_file)  # PolicyConfigError propagates
        self.engine = Engine(
            load_ruleset(
                rules, extra_types=self._extra_types, key=config.rules_file, version=version
            ),
            extra_types=self._extra_types,
        )
        self._next_check = clock() + config.reload_check_seconds
        self._covered: frozenset[str] = frozenset()
        self._event_actions: dict[str, str] = {}
        self._index_actions()
        self._ignore = (
            re.compile("|".join(f"(?:{p})" for p in config.ignore_users))
            if config.ignore_users
            else None
        )
        self._cache: dict[tuple[str, str, str | None], tuple[float, Mapping[str, Any]]] = {}
        #: The last reload error (None after a good load), for tests and operators.
        self.reload_error: str | None = None
        self._next_unavailable_log = float("-inf")
        self._unavailable_suppressed = 0

    # ------------------------------------------------------------------ rules

    @property
    def version(self) -> str:
        return self.engine.ruleset.version

    def _index_actions(self) -> None:
        plan = self.engine.ruleset.plan
        actions = {CALL_PLACE, CALL_ANSWER, ROOM_POST, GROUP_CREATE, ROOM_INVITE}
        self._covered = frozenset(a for a in actions if plan(a).entries)
        self._event_actions = {t: a for t, a in EVENT_ACTIONS.items() if a in self._covered}

    def maybe_reload(self) -> None:
        """Reload the rules if the file changed; checks at most every
        ``reload_check_seconds``."""
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self.config.reload_check_seconds
        stamp = _stamp(self.config.rules_file)
        if stamp == self._file_stamp:
            return
        self._file_stamp = stamp
        self.reload()

    def reload(self) -> bool:
        """Read the rules file and put it in force; on an error, log it, keep the old
        rules and return False."""
        path = self.config.rules_file
        try:
            rules, version = read_rules_file(path)
            self.engine.reload(rules, key=path, version=version)
        except PolicyConfigError as exc:
            self.reload_error = str(exc)
            logger.error(
                "Anywhere policy: the rules in %s are invalid; rule set %s stays in force:\n%s",
                path,
                self.version,
                exc,
            )
            return False
        self.reload_error = None
        self._cache.clear()
        self._index_actions()
        logger.info(
            "Anywhere policy: loaded rule set %s (%d rules) from %s",
            self.version,
            len(self.engine.ruleset),
            path,
        )
        return True

    def covers(self, action: str) -> bool:
        return action in self._covered

    def action_for_event(self, event_type: str) -> str | None:
        """The action of an event type when some rule covers it, else None."""
        return self._event_actions.get(event_type)

    def may_apply(self, actor: str, action: str, room_id: str | None) -> bool:
        """Whether some rule covering ``action`` has a scope that can match ``actor`` in
        ``room_id`` — known before any fact is fetched (``public_institution`` comes
        with the facts, so it counts as a possible match here)."""
        for _rule, scope in self.engine.ruleset.plan(action).entries:
            if scope is None:
                return True
            probe = Request(
                actor,
                action,
                room_id=room_id,
                facts={PUBLIC_INSTITUTION: scope.public_institution},
            )
            if scope.matches(probe):
                return True
        return False

    def ignored(self, user_id: str) -> bool:
        return self._ignore is not None and self._ignore.match(user_id) is not None

    # -------------------------------------------------------------- decisions

    async def decide(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        target: str | None = None,
    ) -> PolicyAnswer | None:
        """The decision for ``actor`` doing ``action``, or None when the module does not
        check it (no rule covers the action or can apply to the actor, or the actor is
        ignored): then no facts are fetched."""
        self.maybe_reload()
        if action not in self._covered or self.ignored(actor):
            return None
        if not self.may_apply(actor, action, room_id):
            return None
        try:
            facts = await self.facts(actor, action, room_id)
        except FactsUnavailable as exc:
            return self._unavailable(actor, action, exc)
        decision = self.engine.evaluate(
            Request(actor, action, target=target, room_id=room_id, facts=facts)
        )
        answer = PolicyAnswer.from_decision(decision)
        if not answer.allowed:
            logger.info(
                "Anywhere policy: %s %s by %s in %s: %s [%s] (decision %s, rule set %s)",
                answer.outcome.upper(),
                action,
                actor,
                room_id,
                answer.rule_id,
                answer.code,
                answer.decision_id,
                answer.ruleset_version,
            )
        return answer

    async def facts(self, actor: str, action: str, room_id: str | None) -> Mapping[str, Any]:
        """The facts from the bridge, cached for ``facts_cache_seconds``."""
        ttl = self.config.facts_cache_seconds
        key = (actor, action, room_id)
        if ttl > 0:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
        facts = await self._fetch_facts(actor, action, room_id)
        if ttl > 0:
            now = self._clock()
            if len(self._cache) >= _MAX_CACHED_FACTS:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= _MAX_CACHED_FACTS:
                    self._cache.clear()
            self._cache[key] = (now + ttl, facts)
        return facts

    def _unavailable(self, actor: str, action: str, exc: Exception) -> PolicyAnswer:
        verb = "allowing" if self.config.fail_open else "refusing"
        now = self._clock()
        if now >= self._next_unavailable_log:
            # At most one warning per interval: a bridge that is down must not flood
            # Synapse's log with one line per event.
            self._next_unavailable_log = now + UNAVAILABLE_LOG_SECONDS
            suppressed, self._unavailable_suppressed = self._unavailable_suppressed, 0
            logger.warning(
                "Anywhere policy: no facts from the bridge (%s); %s %s by %s (fail_open: %s)%s",
                exc,
                verb,
                action,
                actor,
                "true" if self.config.fail_open else "false",
                f"; {suppressed} more since the last warning" if suppressed else "",
            )
        else:
            self._unavailable_suppressed += 1
        if self.config.fail_open:
            return PolicyAnswer(True, "allow", None, f"Allowed without facts: {exc}", "fail_open")
        return PolicyAnswer(
            False,
            "deny",
            None,
            "The service that checks this action is unreachable right now, so it was "
            "refused. Try again in a minute; if it keeps happening, tell your homeserver's "
            "operator.",
            FACTS_UNAVAILABLE,
            ruleset_version=self.version,
        )


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def parse_facts(status: int, body: bytes) -> dict[str, Any]:
    """The facts out of the bridge's answer; :class:`FactsUnavailable` if it is not
    ``200 {"facts": {...}}``."""
    if status != 200:
        text = body[:200].decode("utf-8", "replace")
        raise FactsUnavailable(f"the bridge answered HTTP {status}: {text}")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise FactsUnavailable(f"the bridge's answer is not JSON: {exc}") from exc
    facts = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(facts, dict):
        raise FactsUnavailable('the bridge\'s answer has no "facts" object')
    return facts


def facts_url(base: str, user_id: str, action: str, room_id: str | None) -> str:
    params = {"user": user_id, "action": action}
    if room_id is not None:
        params["room"] = room_id
    return f"{base}{FACTS_PATH}?{urlencode(params)}"
