"""Reading a rules file: the one place the bridge, the Synapse module and
``anywhere policy test`` get their rules from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from .errors import PolicyConfigError, Problem


def read_rules_file(path: str | Path) -> tuple[list[dict[str, Any]], str]:
    """The rule list in ``path`` and a version string (a hash of the file's bytes).

    The file holds a YAML list of rules, or a mapping with a ``rules`` list. A missing or
    unreadable file is a :class:`PolicyConfigError` naming the file.
    """
    return parse_rules(read_rules_bytes(path), path)


def read_rules_bytes(path: str | Path) -> bytes:
    """The bytes of a rules file; a missing or unreadable file is a
    :class:`PolicyConfigError` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PolicyConfigError(
            [Problem(str(path), "a readable rules file", exc.strerror or str(exc), "")]
        ) from exc


def parse_rules(raw: bytes, path: str | Path) -> tuple[list[dict[str, Any]], str]:
    """The rule list in ``raw`` (the bytes of the rules file ``path``) and its version."""
    path = Path(path)
    try:
        data = yaml.safe_load(raw) or []
    except yaml.YAMLError as exc:
        raise PolicyConfigError([Problem(str(path), "valid YAML", str(exc), "")]) from exc
    if isinstance(data, dict):
        data = data.get("rules") or []
    if not isinstance(data, list):
        raise PolicyConfigError([Problem(str(path), "a list of rules", type(data).__name__, "")])
    version = hashlib.sha256(raw).hexdigest()[:12]
    return data, version
