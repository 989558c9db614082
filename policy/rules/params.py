"""Rule parameters: how a rule type declares the config keys it takes.

A validator is a function ``value -> normalized value`` that raises :class:`Invalid`
with what it expected; the loader turns that into a :class:`anywhere.policy.errors.Problem` that
names the key and what was found there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED = object()
"""Default of a :class:`Param` the operator must give."""

Validator = Callable[[Any], Any]


class Invalid(ValueError):
    """Raised by a validator. ``key_suffix`` points inside the value (``.3g``, ``[1]``)."""

    def __init__(self, expected: str, found: Any, key_suffix: str = "", hint: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.found = found
        self.key_suffix = key_suffix
        self.hint = hint


@dataclass(frozen=True)
class Param:
    """One config key of a rule type: its validator, default and a line of documentation."""

    check: Validator
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _number_hint(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and infinity are not allowed; write the number itself"
    if isinstance(value, str):
        return "write numbers without thousands separators"
    return ""


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def positive_number(value: Any) -> float | int:
    if not _is_number(value) or value <= 0:
        raise Invalid("a positive number", value, hint=_number_hint(value))
    return value


def non_negative_number(value: Any) -> float | int:
    if not _is_number(value) or value < 0:
        raise Invalid("a number of 0 or more", value, hint=_number_hint(value))
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid("a positive whole number", value)
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false", value)
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("a non-empty string", value)
    return value


def one_of(*choices: str) -> Validator:
    def check(value: Any) -> str:
        if value not in choices:
            raise Invalid(f"one of {', '.join(choices)}", value)
        return value

    return check


def upper_code(letters: int, what: str) -> Validator:
    """An ISO code such as a country (2 letters) or currency (3), normalized to upper case."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) != letters or not value.isalpha():
            raise Invalid(f"a {letters}-letter {what} code", value)
        return value.upper()

    return check


def string_set(item: Validator = text, *, allow_empty: bool = False) -> Validator:
    """A list of strings (a single string is accepted as a list of one) → frozenset."""

    def check(value: Any) -> frozenset[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple | set | frozenset):
            raise Invalid("a list of strings", value)
        if not items and not allow_empty:
            raise Invalid("a non-empty list", value)
        result = []
        for index, element in enumerate(items):
            try:
                result.append(item(element))
            except Invalid as exc:
                raise Invalid(exc.expected, exc.found, f"[{index}]{exc.key_suffix}") from None
        return frozenset(result)

    return check


def mapping_of(keys: Iterable[str], value: Validator, *, partial: bool = True) -> Validator:
    """A mapping whose keys come from ``keys`` and whose values pass ``value``."""
    allowed = tuple(keys)

    def check(found: Any) -> dict[str, Any]:
        if not isinstance(found, Mapping):
            raise Invalid(f"a mapping with keys among {', '.join(allowed)}", found)
        result = {}
        for key, element in found.items():
            key = str(key)
            if key not in allowed:
                raise Invalid(f"one of the keys {', '.join(allowed)}", key, f".{key}")
            try:
                result[key] = value(element)
            except Invalid as exc:
                raise Invalid(
                    exc.expected, exc.found, f".{key}{exc.key_suffix}", exc.hint
                ) from None
        if not partial and set(result) != set(allowed):
            raise Invalid(f"all of the keys {', '.join(allowed)}", sorted(result))
        return result

    return check
