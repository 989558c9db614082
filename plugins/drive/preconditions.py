"""Conditional requests (RFC 9110 section 13): If-Match, If-None-Match and If-Range
against a file's entity tag, pure logic with no I/O.

A file's entity tag is its revision, ``"12"``: a strong validator (it changes with every
change of the file, content or not). The drive keeps no modification dates as validators,
so a date in If-Range never matches (the whole file is sent), and If-Modified-Since and
If-Unmodified-Since are not evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from multidict import CIMultiDictProxy

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*')


@dataclass(frozen=True)
class EntityTag:
    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.opaque}"'


@dataclass(frozen=True)
class TagList:
    """The value of If-Match or If-None-Match: ``*`` or a list of entity tags. A value
    that does not parse is kept as ``malformed``: a list that matches nothing."""

    raw: str
    any: bool = False
    tags: tuple[EntityTag, ...] = ()
    malformed: bool = False

    @classmethod
    def parse(cls, raw: str) -> TagList:
        if raw.strip() == "*":
            return cls(raw, any=True)
        tags: list[EntityTag] = []
        pos = 0
        while pos < len(raw):
            if raw[pos] in ", \t":  # empty list elements are allowed (RFC 9110 5.6.1)
                pos += 1
                continue
            match = _TAG.match(raw, pos)
            if match is None or (match.end() < len(raw) and raw[match.end()] != ","):
                return cls(raw, malformed=True)
            tags.append(EntityTag(match.group(2), weak=bool(match.group(1))))
            pos = match.end()
        return cls(raw, tags=tuple(tags), malformed=not tags)

    def strong_match(self, current: EntityTag | None) -> bool:
        """If-Match: strong comparison (a weak tag never matches)."""
        if current is None:
            return False
        if self.any:
            return True
        return not current.weak and any(
            not tag.weak and tag.opaque == current.opaque for tag in self.tags
        )

    def weak_match(self, current: EntityTag | None) -> bool:
        """If-None-Match: weak comparison (``W/"12"`` matches ``"12"``)."""
        if current is None:
            return False
        return self.any or any(tag.opaque == current.opaque for tag in self.tags)


def header_list(headers: CIMultiDictProxy[str], name: str) -> TagList | None:
    """The field's value (several lines are one comma-separated list), or None."""
    values = headers.getall(name, [])
    return TagList.parse(", ".join(values)) if values else None


class Outcome(Enum):
    PROCEED = 200
    NOT_MODIFIED = 304
    FAILED = 412


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    #: Which field decided, for the error message: "If-Match" or "If-None-Match".
    field: str = ""
    #: If-Match matched by tag (not ``*``): the write must still find this tag current
    #: when it is stored (the store checks it again, atomically).
    matched: EntityTag | None = None


def evaluate(
    method: str,
    if_match: TagList | None,
    if_none_match: TagList | None,
    current: EntityTag | None,
) -> Verdict:
    """RFC 9110 13.2.2 steps 1 and 3 for a resource whose current representation has
    the entity tag ``current`` (None: there is none)."""
    if if_match is not None:
        if not if_match.strong_match(current):
            return Verdict(Outcome.FAILED, "If-Match")
        matched = None if if_match.any else current
    else:
        matched = None
    if if_none_match is not None and if_none_match.weak_match(current):
        if method in ("GET", "HEAD"):
            return Verdict(Outcome.NOT_MODIFIED, "If-None-Match")
        return Verdict(Outcome.FAILED, "If-None-Match")
    return Verdict(Outcome.PROCEED, matched=matched)


def range_applies(if_range: str | None, current: EntityTag) -> bool:
    """If-Range (RFC 9110 13.1.5): send the range only when the validator is a strong
    entity tag equal to the current one; a date, a weak or another tag gets the whole
    current file (so a resumed download never splices two versions)."""
    if if_range is None:
        return True
    tags = TagList.parse(if_range)
    if tags.any or tags.malformed or len(tags.tags) != 1:
        return False
    return tags.strong_match(current)
