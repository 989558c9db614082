"""Content rules: what may leave the shared drive."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..actions import DRIVE_SHARE
from ..facts import (
    MEDIA_KIND_DECLARED,
    MEDIA_KIND_EXTENSION,
    MEDIA_KIND_SNIFFED,
    MEDIA_KINDS,
)
from ..model import Request, Verdict
from .base import Rule
from .params import Param, one_of, string_set

_LOOKS = (
    (MEDIA_KIND_SNIFFED, "its content"),
    (MEDIA_KIND_EXTENSION, "its file name"),
    (MEDIA_KIND_DECLARED, "its declared type"),
)


def _kinds(facts: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(kind, how it was found)`` for every media kind the three looks reported."""
    for fact, how in _LOOKS:
        value = facts.get(fact)
        if value is None:
            continue
        for kind in (value,) if isinstance(value, str) else value:
            yield kind, how


class CopyrightMedia(Rule):
    """Music and video stay in the drive: sharing them out (``drive.share``) is denied.

    The file's kind is looked at three ways (content, extension, declared MIME type) and
    the strictest wins: one look saying audio or video is enough. Without any of the
    three facts the rule has no opinion.
    """

    type_name = "copyright_media"
    family = "content"
    default_actions = frozenset({DRIVE_SHARE})
    params = {
        "kinds": Param(
            string_set(one_of(*MEDIA_KINDS)),
            frozenset({"audio", "video"}),
            "media kinds that may not be shared",
        ),
    }

    def prepare(self) -> None:
        self._allowed = self.allow("Not a music or video file.", "not_copyright_media")
        self._unknown = self.no_opinion("Media kind unknown.", "media_kind_unknown")

    def evaluate(self, request: Request) -> Verdict | None:
        seen = False
        for kind, how in _kinds(request.facts):
            seen = True
            if kind in self.kinds:
                return self.deny(
                    f"Music and video can't be shared out of the drive (copyright); this file "
                    f"is {kind}, judging by {how}. It stays in your drive: share another "
                    "file, or a link to where it is licensed.",
                    "copyright_media",
                )
        return self._allowed if seen else self._unknown
