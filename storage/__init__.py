"""Anywhere's storage: the bridge database (SQLite by default, PostgreSQL by URL) with
versioned migrations per plugin, and the drive's blob store. Names are imported on first
use (``anywhere.storage.errors`` alone stays light for the command line)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Migrations": ".migrations",
    "run_migrations": ".migrations",
    "open_database": ".database",
}
__all__ = ["Migrations", "open_database", "run_migrations"]

if TYPE_CHECKING:
    from .database import open_database
    from .migrations import Migrations, run_migrations


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
