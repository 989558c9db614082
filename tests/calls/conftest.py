"""The calls tests' own stack: Synapse plus a bridge running ``basics``, ``policy`` and
``calls``, with ICE on loopback only."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

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
    # the bot's calls from @tonecaller… go to another plugin's mode (tone_mode_plugin.py)
    "bot_modes": [{"caller": "@tonecaller*", "mode": "tone"}],
}

#: A third-party plugin giving a call mode (tests/calls/tone_mode_plugin.py).
TONE_PLUGIN = "tone_mode_test"

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


def installed_tone_plugin(folder: Path) -> Path:
    """A folder holding the entry point of :data:`TONE_PLUGIN` (its module is beside
    this file), as an installed distribution's metadata would: on ``sys.path`` (or
    ``PYTHONPATH``), the plugin manager finds the plugin like any installed one."""
    dist = folder / f"{TONE_PLUGIN}-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {TONE_PLUGIN}\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        f"[anywhere.plugins]\n{TONE_PLUGIN} = tone_mode_plugin\n"
    )
    return folder


@contextlib.contextmanager
def on_sys_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="session")
def calls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("calls")
    rules = workdir / "policy-rules.yaml"
    rules.write_text(POLICY_RULES, "utf-8")
    plugin_dir = installed_tone_plugin(workdir / "site")
    with on_sys_path(plugin_dir):  # the stack loads the plugins to write the registration
        stack = Stack(
            workdir,
            ["basics", "policy", "calls", TONE_PLUGIN],
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
    here = str(Path(__file__).parent)
    paths = [str(plugin_dir), here, os.environ.get("PYTHONPATH", "")]
    stack.bridge.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
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
