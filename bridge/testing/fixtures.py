"""pytest fixtures for Anywhere and its plugins (loaded through the ``pytest11`` entry
point, so a plugin's tests can use them as soon as ``anywhere-bridge`` is installed).

``plugin_kit`` runs a plugin in-process with no homeserver (unit tests in a fraction of a
second); the other fixtures start a real Synapse for end-to-end tests.

Override ``anywhere_enabled_plugins`` / ``anywhere_plugin_settings`` in your
``conftest.py`` to run the stack with your plugin::

    @pytest.fixture(scope="session")
    def anywhere_enabled_plugins():
        return ["basics", "hello"]

The fixtures are asynchronous and session-scoped: set ``asyncio_mode = "auto"`` and
``asyncio_default_fixture_loop_scope = asyncio_default_test_loop_scope = "session"`` for
pytest-asyncio, as Anywhere's own pyproject.toml does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import asyncpg
import pytest
import pytest_asyncio

from .kit import PluginKit
from .stack import MatrixUser, Stack

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def running_under_ci() -> bool:
    """``CI=true`` (as GitHub Actions, GitLab CI and most others set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip the test for a missing requirement (PostgreSQL, Chromium, root, an npm
    package), saying which; under ``CI=true`` fail it instead, so that a CI run never
    passes with part of the suite silently left out."""
    if running_under_ci():
        pytest.fail(f"{reason} (required: CI=true is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def anywhere_enabled_plugins() -> list[str]:
    """Plugins the test bridge runs (entry-point names)."""
    return ["basics"]


@pytest.fixture(scope="session")
def anywhere_plugin_settings() -> dict:
    """``plugins.settings`` for the test bridge."""
    return {}


@pytest.fixture(scope="session")
def anywhere_bridge_config() -> dict:
    """Other config keys for the test bridge, merged onto a fresh config
    (for example ``{"bridge": {"permissions": {...}}}``)."""
    return {}


@pytest.fixture(scope="session")
def anywhere_stack(
    tmp_path_factory: pytest.TempPathFactory,
    anywhere_enabled_plugins: list[str],
    anywhere_plugin_settings: dict,
    anywhere_bridge_config: dict,
) -> Iterator[Stack]:
    """A real Synapse (SQLite, temporary folder, free port) with the bridge registered,
    and the bridge running as a process. Shared by the whole session."""
    with Stack(
        tmp_path_factory.mktemp("anywhere"),
        anywhere_enabled_plugins,
        anywhere_plugin_settings,
        bridge_extra=anywhere_bridge_config,
    ) as stack:
        yield stack


@pytest.fixture(scope="session")
def bot_id(anywhere_stack: Stack) -> str:
    return anywhere_stack.bot_id


@pytest_asyncio.fixture
async def matrix_user(
    anywhere_stack: Stack,
) -> AsyncIterator[Callable[..., Awaitable[MatrixUser]]]:
    """Factory: ``alice = await matrix_user()`` registers a new person and logs them in."""
    async with anywhere_stack.people() as make:
        yield make


@pytest_asyncio.fixture
async def plugin_kit(tmp_path) -> AsyncIterator[Callable[..., Awaitable[PluginKit]]]:
    """Factory for the in-process plugin kit (``bridge/testing/kit.py``): no homeserver,
    a temporary SQLite, the real router, policy hook and jobs, rooms that record what is
    sent. ``kit = await plugin_kit({"weather": WeatherPlugin()}, settings={...})``;
    every kit made is stopped at the end of the test."""
    kits: list[PluginKit] = []

    async def make(plugins: dict | None = None, **options) -> PluginKit:
        kit = PluginKit(tmp_path / f"kit{len(kits)}", plugins, **options)
        kits.append(kit)
        return await kit.start()

    yield make
    failures = []
    for kit in kits:  # each is stopped, even after another failed to stop
        try:
            await kit.stop()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


@pytest_asyncio.fixture(params=["sqlite", "postgres"], loop_scope="function")
async def anywhere_database_url(request, tmp_path) -> AsyncIterator[str]:
    """A database URL, once for SQLite (a file in ``tmp_path``) and once for a fresh
    PostgreSQL database (created on ``ANYWHERE_TEST_PG``, default
    postgresql://postgres@127.0.0.1:5432/postgres, and dropped afterwards). Tests that
    take it run on both; PostgreSQL is skipped only where none is reachable (and fails
    under ``CI=true``)."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'anywhere.db'}"
        return
    async with postgres_database() as url:
        yield url


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database on ``ANYWHERE_TEST_PG`` (default
    postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards; the test is
    skipped where no PostgreSQL is reachable (failed under ``CI=true``)."""
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@contextlib.contextmanager
def postgres_database_blocking() -> Iterator[str]:
    """``postgres_database`` for synchronous fixtures (e.g. a session-scoped stack):
    the database is made and dropped on a thread of its own, so it works whether or not
    an event loop runs in the caller's thread."""

    def run(coroutine):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    url = run(create_postgres_database())
    try:
        yield url
    finally:
        run(drop_postgres_database(url))


async def create_postgres_database() -> str:
    """See ``postgres_database``; drop it with ``drop_postgres_database``."""
    admin_url = os.environ.get("ANYWHERE_TEST_PG", PG_ADMIN_URL)
    try:
        admin = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        skip_unless_ci(
            f"no PostgreSQL reachable at {admin_url} ({exc}); set ANYWHERE_TEST_PG to one"
        )
    name = f"anywhere_test_{secrets.token_hex(4)}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str) -> None:
    admin_url = os.environ.get("ANYWHERE_TEST_PG", PG_ADMIN_URL)
    admin = await asyncpg.connect(admin_url, timeout=5)
    try:
        await admin.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await admin.close()
