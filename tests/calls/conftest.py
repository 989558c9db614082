"""The calls tests' own stack: Synapse plus a bridge running ``basics``, ``policy`` and
``calls``, with ICE on loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from anywhere.bridge.testing.stack import MatrixUser, Stack
from anywhere.plugins.calls.ice import limit_gathering

CALL_SETTINGS = {
    "ice_addresses": ["127.0.0.1"],
    "max_calls": 3,
    "max_calls_per_person": 2,
    "echo_max_seconds": 15,
    "connect_timeout": 8,
    "memo_max_seconds": 4,
}

#: The real policy plugin, with one real rule: people called @blocked* may call over
#: Wi-Fi only, and nobody has reported a network, so their calls are refused.
POLICY_RULES = """
- type: wifi_only
  id: wifi-only-for-blocked
  scope: {users: ["@blocked*"]}
"""


@pytest.fixture(scope="session", autouse=True)
def loopback_ice() -> None:
    """The people's aiortc peers in this process gather on loopback only, too."""
    limit_gathering(["127.0.0.1"])


@pytest.fixture(scope="session")
def calls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("calls")
    rules = workdir / "policy-rules.yaml"
    rules.write_text(POLICY_RULES, "utf-8")
    stack = Stack(
        workdir,
        ["basics", "policy", "calls"],
        settings={"calls": CALL_SETTINGS, "policy": {"rules_file": str(rules)}},
        bridge_extra={
            "bridge": {
                "permissions": {
                    "localhost": "user",
                    "@outsider:localhost": "none",
                    "@nopermission:localhost": "none",
                }
            }
        },
    )
    with stack:
        yield stack


@pytest.fixture(scope="session")
def calls_bot(calls_stack: Stack) -> str:
    return calls_stack.bot_id


@pytest.fixture(scope="session")
def memo_user(calls_stack: Stack) -> str:
    return f"@{calls_stack.config['appservice']['ghost_prefix']}calls_memo:localhost"


@pytest_asyncio.fixture
async def person(calls_stack: Stack) -> AsyncIterator[Callable[..., Awaitable[MatrixUser]]]:
    """Factory: ``alice = await person()`` registers a new person and logs them in."""
    async with calls_stack.people() as make:
        yield make
