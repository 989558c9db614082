"""A rule set: the ordered rules in force, and how it is built from config.

Config is a list of mappings, one per rule::

    - type: plan_threshold          # required: a registered rule type
      id: kr-plan                   # optional, default: the type; unique in the set
      mode: enforce                 # or dry-run
      actions: [call.place]         # optional, default: the type's actions; globs ok
      scope: {users: ["@*:example.org"], rooms: ["!*:example.org"], public_institution: true}
      thresholds: {3g: 54000}       # everything else: the type's parameters

:func:`load_ruleset` checks all of it and raises one :class:`PolicyConfigError` listing
every problem (``policy.rules[2].thresholds.3g: expected a positive number, found
'abc'``), so an invalid file never half-applies.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .actions import KNOWN_ACTIONS
from .errors import PolicyConfigError, Problem
from .rules import Rule, Scope, rule_types
from .rules.base import MODES, compile_globs, is_glob
from .rules.params import Invalid, boolean, string_set

BASE_KEYS = ("type", "id", "mode", "actions", "scope")
SCOPE_KEYS = ("users", "rooms", "public_institution")
_MAX_CACHED_ACTIONS = 4096


@dataclass(frozen=True, slots=True)
class Plan:
    """The rules that cover one action, precomputed so evaluation does no lookups.

    ``entries`` pairs each rule with its scope (None when it covers everyone);
    ``veto_families`` maps the ids of veto rules to the families they veto.
    """

    entries: tuple[tuple[Rule, Scope | None], ...]
    veto_families: Mapping[str, frozenset[str]]


class RuleSet:
    """Rules in order, with a version (the config's fingerprint unless given) that the
    audit log records with every decision."""

    def __init__(self, rules: Sequence[Rule], version: str) -> None:
        self.rules = tuple(rules)
        self.version = version
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"rule ids must be unique in a rule set: {', '.join(dupes)}")
        self._plans: dict[str, Plan] = {}

    def plan(self, action: str) -> Plan:
        """The rules covering ``action`` (cached per action name)."""
        plan = self._plans.get(action)
        if plan is None:
            covering = [r for r in self.rules if r.applies_to(action)]
            plan = Plan(
                entries=tuple((r, None if r.scope.everything else r.scope) for r in covering),
                veto_families={r.id: r.vetoes for r in covering if r.vetoes},
            )
            if len(self._plans) < _MAX_CACHED_ACTIONS:
                self._plans[action] = plan
        return plan

    def known_actions(self) -> tuple[str, ...]:
        """Anywhere's actions and those the rules name exactly (a plugin's own), sorted."""
        named = {a for r in self.rules for a in r.actions or () if not is_glob(a)}
        return tuple(sorted(named | set(KNOWN_ACTIONS)))

    def unknown_action(self, action: str) -> str | None:
        """None when ``action`` is known; else a sentence saying so, with a "did you
        mean" and the known actions."""
        known = self.known_actions()
        if action in known:
            return None
        hint = _did_you_mean(action, known)
        return (
            f"{action!r} is not an action the rules know"
            + (f" ({hint})" if hint else "")
            + f"; known actions: {', '.join(known)}"
        )

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"<RuleSet {self.version} with {len(self.rules)} rules>"


def fingerprint(config: Any) -> str:
    """A short, stable version for a config: the same rules give the same version."""
    canonical = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def load_ruleset(
    config: Sequence[Mapping[str, Any]] | None,
    *,
    extra_types: Mapping[str, type[Rule]] | None = None,
    key: str = "policy.rules",
    version: str | None = None,
) -> RuleSet:
    """Build a :class:`RuleSet` from ``config`` (a list of rule mappings).

    ``extra_types`` are rule types from plugins (the ``anywhere_policy_rule_classes()``
    hook) in addition to the registered ones; ``key`` is where the list sits in the
    config file, used in error messages. Raises :class:`PolicyConfigError`.
    """
    if config is None:
        config = []
    if not isinstance(config, list | tuple):
        raise PolicyConfigError.single(key, "a list of rules", config)
    types = rule_types(extra_types)
    known = known_actions(types)
    problems: list[Problem] = []
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(config):
        item_key = f"{key}[{index}]"
        rule = _build_rule(item, item_key, types, known, problems)
        if rule is None:
            continue
        if rule.id in first_index:
            problems.append(
                Problem(
                    f"{item_key}.id",
                    "a rule id not used before",
                    rule.id,
                    f"{key}[{first_index[rule.id]}] has it too; give each rule its own id",
                )
            )
            continue
        first_index[rule.id] = index
        rules.append(rule)
    if problems:
        raise PolicyConfigError(problems)
    return RuleSet(rules, version or fingerprint(list(config)))


def known_actions(types: Mapping[str, type[Rule]]) -> tuple[str, ...]:
    """Anywhere's actions and those the rule types cover by default, sorted."""
    names = set(KNOWN_ACTIONS)
    for cls in types.values():
        names.update(a for a in cls.default_actions or () if not is_glob(a))
    return tuple(sorted(names))


ANYWHERE_NAMESPACES = frozenset(a.split(".", 1)[0] for a in KNOWN_ACTIONS)
"""``call``, ``room``, ...: an unknown action in one of these is a typo, not a plugin's."""


def _check_actions(raw: Any, key: str, known: Sequence[str], problems: list[Problem]) -> None:
    """Refuse action names that look like typos: an unknown name in one of Anywhere's
    namespaces or close to a known one, or a glob that matches none of them there.
    Other names (a plugin's own, ``acme.roam``) are accepted."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        return
    for index, action in enumerate(items):
        if not isinstance(action, str) or action in known:
            continue
        namespace = action.split(".", 1)[0]
        if is_glob(action):
            matcher = compile_globs([action])
            if any(matcher.match(a) for a in known) or namespace not in ANYWHERE_NAMESPACES:
                continue
        close = difflib.get_close_matches(action, known, n=1)
        if namespace not in ANYWHERE_NAMESPACES and not close:
            continue
        problems.append(
            Problem(
                f"{key}[{index}]",
                f"an action Anywhere asks about ({', '.join(known)}) or a plugin's own",
                action,
                f"did you mean {close[0]!r}?" if close else "",
            )
        )


def _build_rule(
    item: Any,
    key: str,
    types: Mapping[str, type[Rule]],
    known: Sequence[str],
    problems: list[Problem],
) -> Rule | None:
    if not isinstance(item, Mapping):
        problems.append(Problem(key, "a mapping with at least a `type` key", item))
        return None
    type_name = item.get("type")
    cls = types.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        known = sorted(types)
        problems.append(
            Problem(
                f"{key}.type",
                f"one of the known rule types ({', '.join(known)})",
                type_name,
                _did_you_mean(type_name, known),
            )
        )
        return None
    start = len(problems)
    rule_id = item.get("id", type_name)
    if not isinstance(rule_id, str) or not rule_id.strip() or rule_id != rule_id.strip():
        problems.append(
            Problem(f"{key}.id", "a non-empty string without surrounding spaces", rule_id)
        )
    mode = item.get("mode", "enforce")
    if mode not in MODES:
        problems.append(Problem(f"{key}.mode", "enforce or dry-run", mode))
    actions = _check(string_set(), item.get("actions"), f"{key}.actions", problems)
    if actions is not None:
        _check_actions(item.get("actions"), f"{key}.actions", known, problems)
    scope = _scope(item.get("scope"), f"{key}.scope", problems)
    params = {k: v for k, v in item.items() if k not in BASE_KEYS}
    known_keys = (*BASE_KEYS, *cls.params)
    for name in list(params):
        if name not in cls.params:
            problems.append(
                Problem(
                    f"{key}.{name}",
                    f"one of the keys of a {type_name} rule ({', '.join(known_keys)})",
                    hint=_did_you_mean(name, known_keys),
                )
            )
            del params[name]
    # Build the rule even after a problem above, with harmless stand-ins, so that its
    # parameters are checked too and the operator sees every problem at once.
    try:
        rule = cls(
            rule_id if isinstance(rule_id, str) else type_name,
            scope=scope,
            actions=actions,
            mode=mode if mode in MODES else "enforce",
            type_name=type_name,
            config_key=key,
            **params,
        )
    except PolicyConfigError as exc:
        problems.extend(exc.problems)
        return None
    except Exception as exc:  # a plugin's rule class failing in its own way
        problems.append(
            Problem(key, f"a configuration the {type_name} rule accepts", hint=f"{exc}")
        )
        return None
    return rule if len(problems) == start else None


def _check(validator, value: Any, key: str, problems: list[Problem]) -> Any:
    if value is None:
        return None
    try:
        return validator(value)
    except Invalid as exc:
        problems.append(Problem(f"{key}{exc.key_suffix}", exc.expected, exc.found, exc.hint))
        return None


def _scope(value: Any, key: str, problems: list[Problem]) -> Scope | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(Problem(key, f"a mapping with keys among {', '.join(SCOPE_KEYS)}", value))
        return None
    for name in value:
        if name not in SCOPE_KEYS:
            hint = _did_you_mean(name, SCOPE_KEYS)
            problems.append(Problem(f"{key}.{name}", f"one of {', '.join(SCOPE_KEYS)}", hint=hint))
    users = _check(string_set(), value.get("users"), f"{key}.users", problems)
    rooms = _check(string_set(), value.get("rooms"), f"{key}.rooms", problems)
    public = _check(boolean, value.get("public_institution"), f"{key}.public_institution", problems)
    return Scope(sorted(users or ()), sorted(rooms or ()), public)


def _did_you_mean(found: Any, choices: Sequence[str]) -> str:
    if not isinstance(found, str):
        return ""
    close = difflib.get_close_matches(found, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else ""
