"""pytest fixtures for Anywhere and its plugins (loaded through the ``pytest11`` entry
point, so a plugin's tests can use them as soon as ``anywhere-bridge`` is installed).

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

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from .stack import MatrixUser, Stack


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
    stack = Stack(
        tmp_path_factory.mktemp("anywhere"),
        anywhere_enabled_plugins,
        anywhere_plugin_settings,
        bridge_extra=anywhere_bridge_config,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def bot_id(anywhere_stack: Stack) -> str:
    return anywhere_stack.bot_id


@pytest_asyncio.fixture
async def matrix_user(
    anywhere_stack: Stack,
) -> AsyncIterator[Callable[..., Awaitable[MatrixUser]]]:
    """Factory: ``alice = await matrix_user()`` registers a new person and logs them in."""
    made: list[MatrixUser] = []

    async def make(localpart: str | None = None, *, admin: bool = False) -> MatrixUser:
        user = await anywhere_stack.user(localpart, admin=admin)
        made.append(user)
        return user

    yield make
    for user in made:
        await user.close()
