"""The policy module's logic without Synapse: its config, the gate that decides with
the rules and the facts the module keeps (:mod:`anywhere.policy.fact_sync`), and the answer
Synapse gets. Imported by :mod:`anywhere.policy.synapse_module` (see there for what the module
does); importable and testable without Synapse installed."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from .actions import CALL_ANSWER, CALL_PLACE, GROUP_CREATE, ROOM_INVITE, ROOM_POST
from .audit import AuditEntry
from .engine import Engine
from .errors import PolicyConfigError
from .fact_sync import FactStore, FactSync
from .model import ALLOW, DENY, Decision, Request
from .rules import Rule
from .ruleset import RuleSet, load_ruleset
from .rulesfile import parse_rules, read_rules_bytes

logger = logging.getLogger("anywhere.policy.synapse_module")
"""The module logs under the name docs/policy.md gives (``anywhere.policy.synapse_module``)."""

EVENT_ACTIONS: Mapping[str, str] = {
    "m.call.invite": CALL_PLACE,
    "m.call.answer": CALL_ANSWER,
    "m.room.message": ROOM_POST,
    # In encrypted rooms Synapse only sees m.room.encrypted (messages and call events
    # alike): judged as posting, so identity rules cannot be bypassed by encryption.
    "m.room.encrypted": ROOM_POST,
    "m.sticker": ROOM_POST,
    # Every other way of saying something in a room: its name, topic and avatar, polls.
    "m.room.name": ROOM_POST,
    "m.room.topic": ROOM_POST,
    "m.room.avatar": ROOM_POST,
    "m.poll.start": ROOM_POST,
    "m.poll.response": ROOM_POST,
    "m.poll.end": ROOM_POST,
    "org.matrix.msc3381.poll.start": ROOM_POST,
    "org.matrix.msc3381.poll.response": ROOM_POST,
    "org.matrix.msc3381.poll.end": ROOM_POST,
}
"""Event types checked by ``check_event_for_spam`` and the action each one is."""

FIELD_PREFIX = "org.anywhere.policy."
"""Prefix of the extra fields of a refusal's error JSON."""

FACTS_UNAVAILABLE = "policy_facts_unavailable"
"""Code of a refusal because the bridge's facts are unavailable (``fail_open: false``)."""
RULES_INVALID = "policy_rules_invalid"
"""Code of a refusal because no valid rules were ever loaded (``fail_open: false``)."""
GOVERNED_WITHOUT_RULES = frozenset({CALL_PLACE, CALL_ANSWER, GROUP_CREATE})
"""With no valid rules ever loaded, these follow ``fail_open``; everything else passes."""
SOURCE = "synapse"
"""``context.source`` of the module's decisions in the audit log."""


class ModuleConfigError(ValueError):
    """The module's config is wrong; raised as Synapse's ``ConfigError`` by
    :meth:`AnywherePolicyModule.parse_config`."""


@dataclass(frozen=True)
class ModuleConfig:
    """The module's ``config:`` block, checked (see :meth:`from_dict`)."""

    rules_file: str
    bridge_url: str
    bridge_token: str
    facts_refresh_seconds: float = 2.0
    facts_max_age_seconds: float = 60.0
    breaker_seconds: float = 30.0
    fail_open: bool = False
    ignore_users: tuple[str, ...] = ()
    bridge_bot: str | None = None
    timeout_seconds: float = 2.0
    reload_check_seconds: float = 1.0
    last_good_rules_file: str | None = None
    rule_types: Mapping[str, str] = field(default_factory=dict)
    facts_cache_seconds: float | None = None
    """Obsolete (facts are no longer fetched per event): accepted, ignored, warned about."""

    @property
    def last_good_path(self) -> Path:
        """Where the last rules validated are kept: ``last_good_rules_file``, or beside
        the rules file (``<rules_file>.last-good``)."""
        return Path(self.last_good_rules_file or f"{self.rules_file}.last-good")

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
        text("last_good_rules_file", False)
        number("facts_cache_seconds", 0)
        number("facts_refresh_seconds", 0.05)
        number("facts_max_age_seconds", 0.1)
        number("breaker_seconds", 0.1)
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
    request: Request | None = None

    @classmethod
    def from_decision(cls, decision: Decision, request: Request | None = None) -> PolicyAnswer:
        return cls(
            allowed=decision.allowed,
            outcome=str(decision.outcome),
            rule_id=decision.rule_id,
            reason=decision.reason,
            code=decision.code,
            decision_id=decision.decision_id,
            ruleset_version=decision.ruleset_version,
            decision=decision,
            request=request,
        )

    def audit_entry(self) -> AuditEntry | None:
        if self.decision is None or self.request is None:
            return None
        return AuditEntry.from_decision(self.request, self.decision)

    def error_fields(self) -> dict[str, Any]:
        """The fields added to Synapse's error JSON (``error`` replaces its generic
        message, so every client shows the reason)."""
        where = f"policy rule {self.rule_id}" if self.rule_id else "policy"
        return {
            "error": f"{self.reason} ({where}: {self.code}; decision {self.decision_id})",
            FIELD_PREFIX + "reason": self.reason,
            FIELD_PREFIX + "rule": self.rule_id,
            FIELD_PREFIX + "code": self.code,
            FIELD_PREFIX + "outcome": self.outcome,
            FIELD_PREFIX + "decision_id": self.decision_id,
        }


class PolicyGate:
    """The module's logic without Synapse: rules from the file (reloaded when it
    changes, the last valid ones kept on disk), which events and users to check, the
    facts kept in :attr:`store` (synced in the background by :attr:`sync`), and the
    decision. Deciding does no I/O and never waits.

    Everything here runs on Synapse's reactor thread.
    """

    def __init__(
        self,
        config: ModuleConfig,
        *,
        clock: Callable[[], float] = time.time,
        extra_types: Mapping[str, type[Rule]] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._extra_types = dict(extra_types or {})
        self.store = FactStore(config.facts_max_age_seconds, clock)
        self.sync = FactSync(
            self.store,
            refresh=config.facts_refresh_seconds,
            breaker=config.breaker_seconds,
            clock=clock,
        )
        #: The last reload error (None after a good load), for tests and operators.
        self.reload_error: str | None = None
        #: False while no valid rules were ever loaded (neither the file nor a last good
        #: copy): governed actions then follow ``fail_open``, everything else passes.
        self.has_rules = True
        # The stamp first: a change while reading is then seen at the next check.
        self._file_stamp = _stamp(config.rules_file)
        self.engine = Engine(self._initial_ruleset(), extra_types=self._extra_types)
        self._next_check = clock() + config.reload_check_seconds
        self._covered: frozenset[str] = frozenset()
        self._event_actions: dict[str, str] = {}
        self._index_actions()
        self._ignore = (
            re.compile("|".join(f"(?:{p})" for p in config.ignore_users))
            if config.ignore_users
            else None
        )
        self._warn_if_empty()
        if config.facts_cache_seconds is not None:
            logger.warning(
                "Anywhere policy: facts_cache_seconds is obsolete and ignored: facts are kept "
                "in the module and refreshed every facts_refresh_seconds (%gs)",
                config.facts_refresh_seconds,
            )

    # ------------------------------------------------------------------ rules

    def _validate(self, raw: bytes, path: str | Path) -> RuleSet:
        rules, version = parse_rules(raw, path)
        return load_ruleset(rules, extra_types=self._extra_types, key=str(path), version=version)

    def _initial_ruleset(self) -> RuleSet:
        """The rules file if valid (kept as the last good copy); else the last good
        copy; else no rules (said loudly). Synapse starts in every case."""
        path = self.config.rules_file
        try:
            raw = read_rules_bytes(path)
            ruleset = self._validate(raw, path)
        except PolicyConfigError as exc:
            self.reload_error = str(exc)
            logger.error("Anywhere policy: the rules in %s are invalid:\n%s", path, exc)
        else:
            self._keep_last_good(raw)
            return ruleset
        last_good = self.config.last_good_path
        try:
            ruleset = self._validate(read_rules_bytes(last_good), path)
        except PolicyConfigError as exc:
            self.has_rules = False
            verdict = "allowed" if self.config.fail_open else "refused"
            logger.error(
                "Anywhere policy: no valid rules were ever loaded (no usable last good copy "
                "at %s: %s). Until %s is fixed, %s are %s (fail_open: %s) and everything "
                "else passes.",
                last_good,
                exc.problems[0].found if exc.problems else exc,
                path,
                ", ".join(sorted(GOVERNED_WITHOUT_RULES)),
                verdict,
                "true" if self.config.fail_open else "false",
            )
            return RuleSet((), "none")
        logger.error(
            "Anywhere policy: starting with the last rules validated (rule set %s, kept in "
            "%s) until %s is fixed",
            ruleset.version,
            last_good,
            path,
        )
        return ruleset

    def _keep_last_good(self, raw: bytes) -> None:
        target = self.config.last_good_path
        try:
            if target.exists() and target.read_bytes() == raw:
                return
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, target)
        except OSError as exc:
            logger.warning(
                "Anywhere policy: cannot keep a copy of the valid rules in %s (%s): an invalid "
                "rules file at Synapse's next start will leave it without rules; set "
                "last_good_rules_file to a writable path",
                target,
                exc,
            )

    @property
    def version(self) -> str:
        return self.engine.ruleset.version

    def _index_actions(self) -> None:
        plan = self.engine.ruleset.plan
        actions = {CALL_PLACE, CALL_ANSWER, ROOM_POST, GROUP_CREATE, ROOM_INVITE}
        if self.has_rules:
            self._covered = frozenset(a for a in actions if plan(a).entries)
        else:
            self._covered = GOVERNED_WITHOUT_RULES
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
            raw = read_rules_bytes(path)
            ruleset = self._validate(raw, path)
        except PolicyConfigError as exc:
            self.reload_error = str(exc)
            logger.error(
                "Anywhere policy: the rules in %s are invalid; %s:\n%s",
                path,
                f"rule set {self.version} stays in force"
                if self.has_rules
                else "still no valid rules",
                exc,
            )
            return False
        self.engine = Engine(ruleset, extra_types=self._extra_types)
        self._keep_last_good(raw)
        self.reload_error = None
        self.has_rules = True
        self._index_actions()
        logger.info(
            "Anywhere policy: loaded rule set %s (%d rules) from %s",
            self.version,
            len(self.engine.ruleset),
            path,
        )
        self._warn_if_empty()
        return True

    def _warn_if_empty(self) -> None:
        if self.has_rules and not len(self.engine.ruleset):
            logger.warning(
                "Anywhere policy: %s holds no rules: the module restricts nothing, every "
                "action is allowed",
                self.config.rules_file,
            )

    def covers(self, action: str) -> bool:
        return action in self._covered

    def action_for_event(self, event_type: str) -> str | None:
        """The action of an event type when some rule covers it, else None."""
        return self._event_actions.get(event_type)

    def may_apply(self, actor: str, action: str, room_id: str | None) -> bool:
        """Whether some rule covering ``action`` has a scope that can match ``actor`` in
        ``room_id``."""
        facts = self.store.global_facts(actor, room_id)
        for _rule, scope in self.engine.ruleset.plan(action).entries:
            if scope is None or scope.matches(Request(actor, action, room_id=room_id, facts=facts)):
                return True
        return False

    def ignored(self, user_id: str) -> bool:
        return self._ignore is not None and self._ignore.match(user_id) is not None

    # -------------------------------------------------------------- decisions

    def decide(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        target: str | None = None,
    ) -> PolicyAnswer | None:
        """The decision for ``actor`` doing ``action``, or None when the module does not
        check it (no rule covers the action or can apply to the actor, or the actor is
        ignored). No I/O, no side effect: the caller passes the final answer to
        :meth:`conclude`."""
        self.maybe_reload()
        if action not in self._covered or self.ignored(actor):
            return None
        if not self.has_rules:
            return self._without_rules(actor, action, room_id, target)
        if not self.may_apply(actor, action, room_id):
            return None
        if self.store.fresh():
            facts = self.store.facts_for(actor, room_id)
        else:
            facts = self.store.global_facts(actor, room_id)
            probe = Request(actor, action, target=target, room_id=room_id, facts=facts)
            if self._needs_person_facts(probe):
                return self._unavailable(probe)
        request = Request(
            actor, action, target=target, room_id=room_id, facts=facts, context=_CONTEXT
        )
        return PolicyAnswer.from_decision(self.engine.evaluate(request), request)

    def _needs_person_facts(self, request: Request) -> bool:
        """Whether a rule that counts (enforced, in scope) could decide differently with
        the person's facts than without them."""
        for rule, scope in self.engine.ruleset.plan(request.action).entries:
            if rule.dry_run or (scope is not None and not scope.matches(request)):
                continue
            if rule.needs_facts(request):
                return True
        return False

    def conclude(self, answer: PolicyAnswer | None) -> None:
        """The answer goes to the client: log a refusal, and queue it (and any dry-run
        verdict) for the bridge's audit log — the bridge tells the person why."""
        if answer is None:
            return
        decision = answer.decision
        if answer.allowed and (decision is None or not decision.dry_run_verdicts):
            return
        entry = answer.audit_entry()
        if entry is not None:
            self.store.queue_decision(entry.to_json())
        if not answer.allowed:
            request = answer.request
            logger.info(
                "Anywhere policy: %s %s by %s in %s: %s [%s] (decision %s, rule set %s)",
                answer.outcome.upper(),
                request.action if request else "?",
                request.actor if request else "?",
                request.room_id if request else None,
                answer.rule_id,
                answer.code,
                answer.decision_id,
                answer.ruleset_version,
            )

    def _without_rules(
        self, actor: str, action: str, room_id: str | None, target: str | None
    ) -> PolicyAnswer:
        request = Request(actor, action, target=target, room_id=room_id, context=_CONTEXT)
        if self.config.fail_open:
            decision = self.engine.decision_without_rules(
                ALLOW, "Allowed without rules: the rules file is invalid.", RULES_INVALID
            )
        else:
            decision = self.engine.decision_without_rules(
                DENY,
                "This is refused for now: the homeserver's policy rules are being fixed. "
                "Try again later; if it keeps happening, tell your homeserver's operator.",
                RULES_INVALID,
            )
        return PolicyAnswer.from_decision(decision, request)

    def _unavailable(self, probe: Request) -> PolicyAnswer:
        request = Request(
            probe.actor,
            probe.action,
            target=probe.target,
            room_id=probe.room_id,
            facts=probe.facts,
            context=_CONTEXT,
        )
        if self.config.fail_open:
            decision = self.engine.decision_without_rules(
                ALLOW,
                f"Allowed without facts from the bridge ({self.sync.last_error or 'none yet'}).",
                "fail_open",
            )
        else:
            decision = self.engine.decision_without_rules(
                DENY,
                "The service that checks this action is unreachable right now, so it was "
                "refused. Try again in a minute; if it keeps happening, tell your "
                "homeserver's operator.",
                FACTS_UNAVAILABLE,
            )
        return PolicyAnswer.from_decision(decision, request)


_CONTEXT: Mapping[str, Any] = {"source": SOURCE}


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
