"""Drive paths and names: what is allowed, and the key two names collide on.

A drive path is relative to a shared folder (``reports/2024/q1.pdf``). Paths never reach
a real filesystem (content is stored by hash), but they are refused here anyway when
they could not be held by the people's own computers, so that sync never meets a name
it cannot write: Windows' reserved names and characters, trailing dots and spaces,
control characters, and names longer than 255 bytes. The sync client's state folder
name (``.anywhere-sync``, in any case) is reserved too: a drive item of that name would
land in every member's sync state. Two names in one folder that
differ only by case or by Unicode normalisation (``Café`` in NFC and NFD) collide on
macOS and Windows, so they collide here too (see :func:`name_key`).
"""

from __future__ import annotations

import re
import unicodedata

WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
FORBIDDEN_CHARS = set('<>:"|?*\\')
MAX_NAME_BYTES = 255
MAX_DEPTH = 64
SYNC_STATE_DIR = ".anywhere-sync"  # the PC sync client's own folder in each synced folder
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class InvalidName(ValueError):
    """A name or path the drive cannot hold; the message says why and what to do."""


def check_name(name: str) -> str:
    """Return ``name`` in NFC, or raise :class:`InvalidName` with the reason."""
    if not isinstance(name, str) or not name:
        raise InvalidName("a name cannot be empty")
    if "\x00" in name:
        raise InvalidName(f"{name!r} contains a NUL character, which no filesystem can hold")
    if "/" in name:
        raise InvalidName(f"{name!r} contains '/', which separates folders in a path")
    if name in (".", ".."):
        raise InvalidName(f"{name!r} is not allowed: paths stay inside their folder")
    name = unicodedata.normalize("NFC", name)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidName(f"{name!r} contains a control character; rename it")
    bad = sorted(FORBIDDEN_CHARS.intersection(name))
    if bad:
        raise InvalidName(
            f"{name!r} contains {' '.join(bad)}, which Windows cannot hold in a file name; "
            "rename it"
        )
    if name[-1] in " .":
        raise InvalidName(f"{name!r} ends with a space or a dot, which Windows drops; rename it")
    if name.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_RESERVED:
        raise InvalidName(f"{name!r} is a reserved device name on Windows; rename it")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidName(f"{name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes; shorten it")
    if name_key(name) == SYNC_STATE_DIR:
        raise InvalidName(
            f"{name!r} is reserved: the PC sync client keeps its own state in a folder of "
            "that name; choose another name"
        )
    return name


def name_key(name: str) -> str:
    """The key under which names collide: NFC, case-folded, NFC again."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def split_path(path: str, *, allow_empty: bool = False) -> list[str]:
    """Split a drive path into checked names; ``""`` (the folder itself) only when
    ``allow_empty``."""
    if not isinstance(path, str):
        raise InvalidName("a path must be text")
    if "\x00" in path:
        raise InvalidName("the path contains a NUL character")
    if path.startswith(("/", "\\")) or _DRIVE_LETTER.match(path):
        raise InvalidName(
            f"{path!r} is an absolute path; drive paths are relative to a folder "
            "(write reports/q1.pdf)"
        )
    if "\\" in path:
        raise InvalidName(f"{path!r} contains '\\'; separate folders with '/'")
    trimmed = path.rstrip("/") if path.endswith("/") and path.strip("/") else path
    if not trimmed:
        if allow_empty:
            return []
        raise InvalidName("the path is empty; name a file or folder")
    parts = trimmed.split("/")
    if ".." in parts or "." in parts:
        raise InvalidName(f"{path!r} contains '.' or '..'; paths stay inside their folder")
    if "" in parts:
        raise InvalidName(f"{path!r} has an empty part ('//'); remove the extra '/'")
    if len(parts) > MAX_DEPTH:
        raise InvalidName(f"{path!r} is nested deeper than {MAX_DEPTH} folders")
    return [check_name(part) for part in parts]


def join_path(parts: list[str]) -> str:
    return "/".join(parts)
