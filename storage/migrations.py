"""Versioned schema migrations, one independent version line per component.

Each component (the core, each plugin) owns a version table ``<component>_version``
managed by mautrix's :class:`~mautrix.util.async_db.UpgradeTable`; steps run in order,
each in a transaction. A database whose version for a component is newer than the steps
this code knows is refused (it was written by a newer release: upgrade Anywhere, or
restore a backup) rather than used and damaged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mautrix.util.async_db import Database, Scheme, UpgradeTable
from mautrix.util.async_db.errors import UnsupportedDatabaseVersion

from .database import trace_logger
from .errors import SchemaTooNewError

Step = Callable[..., Awaitable[None]]


@dataclass
class Migrations:
    """A component's schema: ``steps[i]`` upgrades version ``i`` to ``i + 1``.

    A step is ``async def step(conn, scheme)``; ``scheme`` is a
    :class:`mautrix.util.async_db.Scheme` for the few places where SQLite and PostgreSQL
    differ (``scheme == Scheme.POSTGRES``). Never edit or reorder a released step; add one.
    """

    component: str
    steps: Sequence[Step] = field(default_factory=list)

    def table(self) -> UpgradeTable:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.component):
            raise ValueError(f"migration component name {self.component!r} must be snake_case")
        table = UpgradeTable(
            version_table_name=f"{self.component}_version",
            database_name=self.component,
            log=trace_logger(f"anywhere.db.{self.component}"),
        )
        for step in self.steps:
            table.register(step, description=(step.__doc__ or step.__name__).strip())
        return table


async def run_migrations(db: Database, migrations: Sequence[Migrations]) -> dict[str, int]:
    """Bring every component up to date; returns ``{component: version}``."""
    versions = {}
    for item in migrations:
        try:
            await item.table().upgrade(db)
        except UnsupportedDatabaseVersion as exc:
            raise SchemaTooNewError(
                f"the database schema of {item.component!r} is newer than this code knows "
                f"({exc}); upgrade Anywhere (or the plugin) or restore a backup — refusing to "
                "start rather than damage it"
            ) from exc
        versions[item.component] = len(item.steps)
    return versions


def is_postgres(scheme: Scheme) -> bool:
    return scheme in (Scheme.POSTGRES, Scheme.COCKROACH)


def serial_primary_key(scheme: Scheme) -> str:
    """An ever-increasing integer key, never reused: the column type for both databases."""
    return "BIGSERIAL PRIMARY KEY" if is_postgres(scheme) else "INTEGER PRIMARY KEY AUTOINCREMENT"
