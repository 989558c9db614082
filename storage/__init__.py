"""Anywhere's storage: the bridge database (SQLite by default, PostgreSQL by URL) with
versioned migrations per plugin."""

from .database import open_database
from .migrations import Migrations, run_migrations

__all__ = ["Migrations", "open_database", "run_migrations"]
