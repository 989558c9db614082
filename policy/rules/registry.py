"""The rule types known by name. Built-in types are registered when :mod:`policy.rules`
is imported; plugins add theirs through the ``anywhere_policy_rule_classes()`` hook (the
bridge passes them to :func:`policy.load_ruleset` as ``extra_types``) or, for code that
runs without the bridge, with :func:`register_rule_type`."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Rule

_TYPES: dict[str, type[Rule]] = {}


def register_rule_type(name: str, cls: type[Rule], *, replace: bool = False) -> None:
    """Make ``cls`` available as ``type: name`` in rule configs.

    Registering another class under a taken name is an error unless ``replace`` is set
    (tests use it); registering the same class twice is harmless.
    """
    if not isinstance(cls, type) or not issubclass(cls, Rule):
        raise TypeError(
            f"rule type {name!r}: {cls!r} is not a subclass of anywhere.policy.rules.Rule"
        )
    if not name or not name.replace("_", "").isalnum() or not name.islower():
        raise ValueError(f"rule type name {name!r} must be snake_case")
    existing = _TYPES.get(name)
    if existing is not None and existing is not cls and not replace:
        raise ValueError(
            f"rule type {name!r} is already registered by {existing.__module__}."
            f"{existing.__qualname__}; choose another name"
        )
    _TYPES[name] = cls


def unregister_rule_type(name: str) -> None:
    _TYPES.pop(name, None)


def rule_type(name: str) -> type[Rule]:
    """The class registered as ``name``; KeyError if there is none."""
    return _TYPES[name]


def rule_types(extra: Mapping[str, type[Rule]] | None = None) -> dict[str, type[Rule]]:
    """All registered types, plus ``extra`` (from plugins) which may not shadow them."""
    types = dict(_TYPES)
    for name, cls in (extra or {}).items():
        if name in types and types[name] is not cls:
            raise ValueError(
                f"rule type {name!r} from {cls.__module__} clashes with the one from "
                f"{types[name].__module__}; one of the plugins must rename it"
            )
        if not isinstance(cls, type) or not issubclass(cls, Rule):
            raise TypeError(
                f"rule type {name!r}: {cls!r} is not a subclass of anywhere.policy.rules.Rule"
            )
        types[name] = cls
    return types
