"""The docs show code that runs: keep docs/plugins.md and the example plugin in step."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from anywhere.bridge import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def test_the_hello_world_in_the_docs_is_the_tested_example_plugin():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    example = (ROOT / "examples" / "hello" / "anywhere_hello.py").read_text()
    assert example in python_blocks(docs)
    assert len(example.strip().splitlines()) <= 12


def test_the_weather_plugin_and_its_test_in_the_docs_run_as_shown(tmp_path):
    """The background-command example: the plugin and its unit test, taken from
    docs/plugins.md, are the example's files, short, and the test passes."""
    blocks = python_blocks((ROOT / "docs" / "plugins.md").read_text())
    plugin = next(block for block in blocks if "async def weather(" in block)
    test = next(block for block in blocks if "async def test_weather" in block)
    example = ROOT / "examples" / "weather"
    assert plugin == (example / "anywhere_weather.py").read_text()
    assert test == (example / "tests" / "test_weather.py").read_text()
    assert len(plugin.strip().splitlines()) <= 30 and len(test.strip().splitlines()) <= 15
    (tmp_path / "anywhere_weather.py").write_text(plugin)
    (tmp_path / "test_weather.py").write_text(test)
    (tmp_path / "conftest.py").write_text("")
    options = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def hookspec_modules() -> list:
    """The core's hookspecs and every built-in plugin's own (``plugins/*/hookspecs.py``)."""
    owned = sorted((ROOT / "plugins").glob("*/hookspecs.py"))
    assert owned, "no plugin declares hooks of its own"
    return [hookspecs] + [
        importlib.import_module(f"anywhere.plugins.{path.parent.name}.hookspecs") for path in owned
    ]


def test_every_hook_is_documented_for_plugin_authors():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for module in hookspec_modules():
        hooks = [name for name in dir(module) if name.startswith("anywhere_")]
        assert hooks, module.__name__
        for name in hooks:
            assert f"`{name}(" in docs, (
                f"{name} ({module.__name__}) is missing from docs/plugins.md"
            )
            assert getattr(module, name).__doc__, f"{name} has no docstring in {module.__name__}"


def test_every_hook_the_docs_list_is_declared():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    declared = {name for module in hookspec_modules() for name in dir(module)}
    listed = set(re.findall(r"^\| `(anywhere_\w+)\(", docs, re.M))
    assert listed
    assert listed <= declared, f"docs/plugins.md lists hooks nobody declares: {listed - declared}"


@pytest.mark.e2e
async def test_hello_answers(matrix_user, bot_id):
    alice = await matrix_user()  # a new person, logged in
    room = await alice.dm(bot_id)  # a direct chat the bot has joined
    await alice.send_text(room, "!hello Ada")
    await alice.wait_for_notice(room, bot_id, "Hello, Ada!")


def renamed_hooks() -> list[tuple[str, str]]:
    """The ``| `old` | `new` | ...`` rows of docs/upgrading.md's hook table."""
    docs = (ROOT / "docs" / "upgrading.md").read_text()
    rows = re.findall(r"^\| `(anywhere_\w+)` \| `(anywhere_\w+)` \|", docs, re.M)
    assert rows, "docs/upgrading.md lists no renamed hooks"
    return rows


@pytest.mark.parametrize("old, new", renamed_hooks())
def test_every_renamed_hook_in_upgrading_md_still_works_with_a_warning_naming_the_new_one(old, new):
    """docs/upgrading.md cannot drift: each old name is still a core hook that warns when a
    plugin implements it, the warning names the new hook, and the new one is declared."""
    declared = {name for module in hookspec_modules() for name in dir(module)}
    assert new in declared, f"docs/upgrading.md names {new}, which no hookspecs declares"
    assert old in dir(hookspecs), f"{old} is no longer declared: fix docs/upgrading.md"
    manager = pluggy.PluginManager("anywhere")
    manager.add_hookspecs(hookspecs)

    class OldStylePlugin:
        pass

    def implementation(*args, **kwargs):
        return None

    setattr(OldStylePlugin, old, pluggy.HookimplMarker("anywhere")(staticmethod(implementation)))
    with pytest.warns(DeprecationWarning, match=new):
        manager.register(OldStylePlugin())
