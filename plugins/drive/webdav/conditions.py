"""The WebDAV ``If`` header (RFC 4918 section 10.4): lists of lock tokens and entity
tags, optionally tagged with the resource they are about."""

from __future__ import annotations

from dataclasses import dataclass, field


class BadIfHeader(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    negated: bool
    kind: str  # "token" or "etag"
    value: str


@dataclass
class IfList:
    resource: str | None  # the tagged resource's URL, None for the request's
    conditions: list[Condition] = field(default_factory=list)


def parse_if(header: str | None) -> list[IfList]:
    if header is None:
        return []
    lists: list[IfList] = []
    tag: str | None = None
    i, n = 0, len(header)
    while i < n:
        ch = header[i]
        if ch.isspace():
            i += 1
        elif ch == "<":  # a resource tag before its lists
            end = header.find(">", i)
            if end < 0:
                raise BadIfHeader("a resource tag '<' is not closed with '>'")
            tag, i = header[i + 1 : end], end + 1
        elif ch == "(":
            current = IfList(tag)
            i += 1
            while True:
                while i < n and header[i].isspace():
                    i += 1
                if i >= n:
                    raise BadIfHeader("a list '(' is not closed with ')'")
                if header[i] == ")":
                    i += 1
                    break
                negated = False
                if header[i : i + 3].lower() == "not":
                    negated, i = True, i + 3
                    while i < n and header[i].isspace():
                        i += 1
                if i < n and header[i] == "<":
                    end = header.find(">", i)
                    if end < 0:
                        raise BadIfHeader("a lock token '<' is not closed with '>'")
                    current.conditions.append(Condition(negated, "token", header[i + 1 : end]))
                elif i < n and header[i] == "[":
                    end = header.find("]", i)
                    if end < 0:
                        raise BadIfHeader("an entity tag '[' is not closed with ']'")
                    current.conditions.append(Condition(negated, "etag", header[i + 1 : end]))
                else:
                    raise BadIfHeader(
                        "a condition must be a <lock-token> or an [entity-tag], optionally "
                        "after Not"
                    )
                i = end + 1
            if not current.conditions:
                raise BadIfHeader("a list '()' needs at least one condition")
            lists.append(current)
        else:
            raise BadIfHeader(f"unexpected {ch!r} in the If header")
    if not lists:
        raise BadIfHeader("the If header holds no condition list")
    return lists


def submitted_tokens(lists: list[IfList]) -> set[str]:
    """The lock tokens the request submits (RFC 4918 section 10.4.1)."""
    return {c.value for lst in lists for c in lst.conditions if c.kind == "token"}
