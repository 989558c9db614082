"""The base class of every rule type, and the scope that selects the requests a rule sees.

A rule type is a subclass of :class:`Rule` that declares its config keys in ``params``
and implements :meth:`Rule.evaluate`. ``evaluate`` must be pure: it reads
``request.facts`` and the rule's own parameters, does no I/O, keeps no state between
calls, and answers in microseconds — the engine runs it for every message and call.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from ..errors import PolicyConfigError, Problem
from ..facts import PUBLIC_INSTITUTION
from ..model import ALLOW, DENY, EMPTY, REQUIRE_VERIFICATION, Outcome, Request, Verdict
from .params import Invalid, Param

ENFORCE: Final = "enforce"
DRY_RUN: Final = "dry-run"
MODES = (ENFORCE, DRY_RUN)

_GLOB_CHARS = frozenset("*?[")


def compile_globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of the shell-style ``patterns`` (case-sensitive)."""
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


def is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


class Scope:
    """Which requests a rule applies to: actor and room globs, and optionally only rooms
    of public institutions (``public_institution: true``) or only others (``false``).

    Empty ``users``/``rooms`` mean everyone/every room. A request without a room never
    matches a scope that names rooms.
    """

    __slots__ = ("users", "rooms", "public_institution", "_users", "_rooms")

    def __init__(
        self,
        users: Iterable[str] = (),
        rooms: Iterable[str] = (),
        public_institution: bool | None = None,
    ) -> None:
        self.users = tuple(users)
        self.rooms = tuple(rooms)
        self.public_institution = public_institution
        self._users = compile_globs(self.users)
        self._rooms = compile_globs(self.rooms)

    @property
    def everything(self) -> bool:
        return not self.users and not self.rooms and self.public_institution is None

    def matches(self, request: Request) -> bool:
        if self._users is not None and self._users.match(request.actor) is None:
            return False
        if self._rooms is not None and (
            request.room_id is None or self._rooms.match(request.room_id) is None
        ):
            return False
        if self.public_institution is not None:
            return bool(request.facts.get(PUBLIC_INSTITUTION)) is self.public_institution
        return True

    def mismatch(self, request: Request) -> str | None:
        """Why ``request`` is out of scope (for ``!policy explain``), or None."""
        if self._users is not None and self._users.match(request.actor) is None:
            return f"{request.actor} is not among {', '.join(self.users)}"
        if self._rooms is not None and (
            request.room_id is None or self._rooms.match(request.room_id) is None
        ):
            return f"room {request.room_id or '(none)'} is not among {', '.join(self.rooms)}"
        if self.public_institution is not None and not self.matches(request):
            which = "only" if self.public_institution else "not"
            return f"applies {which} to rooms of public institutions"
        return None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.users:
            data["users"] = list(self.users)
        if self.rooms:
            data["rooms"] = list(self.rooms)
        if self.public_institution is not None:
            data["public_institution"] = self.public_institution
        return data


EVERYTHING = Scope()


class Rule:
    """Base class of rule types.

    Subclasses set the class attributes and implement :meth:`evaluate`; they may
    override :meth:`prepare` to precompute verdicts that do not depend on the request.

    - ``type_name``: the name used in config (``type: plan_threshold``).
    - ``family``: ``carrier``, ``regulation``, ``identity``, ``content`` or your own.
    - ``default_actions``: actions covered when the config gives no ``actions`` (None:
      every action).
    - ``params``: ``{key: Param}`` — the config keys this type takes, validated at load.
    - ``vetoes``: families whose restricting verdicts this rule cancels when it applies
      (regulation rules veto ``carrier``).
    """

    type_name: ClassVar[str] = ""
    family: ClassVar[str] = "other"
    default_actions: ClassVar[frozenset[str] | None] = None
    params: ClassVar[Mapping[str, Param]] = {}
    vetoes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        id: str,
        *,
        scope: Scope | None = None,
        actions: Iterable[str] | None = None,
        mode: str = ENFORCE,
        type_name: str | None = None,
        config_key: str | None = None,
        **params: Any,
    ) -> None:
        self.id = id
        self.type = type_name or self.type_name or type(self).__name__
        self.config_key = config_key or f"rule {id!r}"
        self.scope = scope or EVERYTHING
        self.actions = frozenset(actions) if actions is not None else self.default_actions
        if mode not in MODES:
            raise PolicyConfigError.single(f"{self.config_key}.mode", "enforce or dry-run", mode)
        self.mode = mode
        self.dry_run = mode == DRY_RUN
        self._exact_actions = frozenset(a for a in self.actions or () if not is_glob(a))
        self._action_globs = compile_globs(a for a in self.actions or () if is_glob(a))
        self._set_params(params)
        try:
            self.prepare()
        except Invalid as exc:
            raise PolicyConfigError.single(
                f"{self.config_key}{exc.key_suffix}", exc.expected, exc.found, exc.hint
            ) from None

    def _set_params(self, given: Mapping[str, Any]) -> None:
        known = ", ".join(self.params) or "none"
        problems = [
            Problem(f"{self.config_key}.{name}", f"one of the parameters of {self.type} ({known})")
            for name in given
            if name not in self.params
        ]
        for name, spec in self.params.items():
            if name not in given:
                if spec.required:
                    key = f"{self.config_key}.{name}"
                    problems.append(Problem(key, spec.doc or "a value", hint="it is required"))
                else:
                    setattr(self, name, spec.default)
                continue
            try:
                setattr(self, name, spec.check(given[name]))
            except Invalid as exc:
                key = f"{self.config_key}.{name}{exc.key_suffix}"
                problems.append(Problem(key, exc.expected, exc.found, exc.hint))
        if problems:
            raise PolicyConfigError(problems)

    def prepare(self) -> None:
        """Called once after the parameters are set: precompute constant verdicts, and
        check parameters against each other — raise ``Invalid(expected, found,
        key_suffix=".param")`` to report a config error on that key."""

    def applies_to(self, action: str) -> bool:
        if self.actions is None or action in self._exact_actions:
            return True
        return self._action_globs is not None and self._action_globs.match(action) is not None

    def needs_facts(self, request: Request) -> bool:
        """Whether this rule's verdict on ``request`` can depend on facts about the
        person (carrier, network, verification...), given only the facts that are not
        about them (``daily_active_users``, ``public_institution``). The Synapse module
        asks when the bridge's facts are unavailable: when no rule needs them, it decides
        without them instead of as ``fail_open`` says. Default: True (be safe)."""
        return True

    def evaluate(self, request: Request) -> Verdict | None:
        """This rule's verdict on ``request``, or None when it has nothing to say.

        Called only for requests in the rule's scope and actions. Return a verdict with
        outcome None ("no opinion") when the reason is worth showing in an explanation,
        for example a missing fact.
        """
        raise NotImplementedError

    # ----- building verdicts -----
    def verdict(
        self,
        outcome: Outcome | None,
        reason: str,
        code: str,
        obligations: Mapping[str, Any] = EMPTY,
    ) -> Verdict:
        return Verdict(
            rule_id=self.id,
            rule_type=self.type,
            family=self.family,
            outcome=outcome,
            reason=reason,
            code=code,
            obligations=obligations,
            dry_run=self.dry_run,
        )

    def allow(self, reason: str, code: str, obligations: Mapping[str, Any] = EMPTY) -> Verdict:
        return self.verdict(ALLOW, reason, code, obligations)

    def deny(self, reason: str, code: str) -> Verdict:
        return self.verdict(DENY, reason, code)

    def require_verification(self, reason: str, code: str) -> Verdict:
        return self.verdict(REQUIRE_VERIFICATION, reason, code)

    def no_opinion(self, reason: str, code: str) -> Verdict:
        return self.verdict(None, reason, code)

    def failed(self, error: BaseException) -> Verdict:
        """The verdict recorded when :meth:`evaluate` raised: a denial (fail closed)."""
        return self.deny(
            f"The policy rule '{self.id}' failed ({type(error).__name__}: {error}), so this "
            "is refused until it is fixed; please tell the operator.",
            "rule_error",
        )

    def describe(self) -> str:
        """One line for explanations: ``kr-plan (plan_threshold, dry-run)``."""
        extra = f", {self.mode}" if self.dry_run else ""
        return f"{self.id} ({self.type}{extra})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} {self.mode}>"
