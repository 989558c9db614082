"""The layering the plugin contract promises, checked on the source's imports (every
import counts: at module level, inside functions and under ``TYPE_CHECKING``).

- no module under ``plugins/`` imports ``anywhere.bridge.runtime`` (plugins get
  ``anywhere.bridge.api``);
- nothing imports ``anywhere.bridge.testing`` but ``bridge/testing`` itself, ``tests/``, ``bench/``
  and plugins' own test helpers (``plugins/**/testing.py``);
- no plugin imports another plugin;
- no import circle between the modules of one folder.

What is not true yet is listed below as known exceptions, each with why: the lists may
only shrink (a test fails when an exception is no longer needed, so it gets removed)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "plugins", "policy", "storage")

# ----- known exceptions (remove entries as the code is migrated; never add) -----

#: plugins still typed against, or reaching into, the runtime object (issue 15: to be
#: moved onto anywhere.bridge.api's Host like the drive and basics); by plugin, since their
#: modules are being rearranged
PLUGINS_IMPORTING_RUNTIME = {"groups"}

#: production modules running on the test harness: none (the dev stack owns its Synapse
#: harness, anywhere.bridge.devsynapse, and the fixtures build on it)
IMPORTING_TESTING: set[str] = set()

#: plugins importing another plugin
PLUGIN_TO_PLUGIN: set[tuple[str, str]] = set()

#: folders with import circles between their modules: none (a part two modules share gets
#: its own module: storage/stores.py, plugins/groups/messages.py, bridge/core.py's CoreHost)
FOLDERS_WITH_CIRCLES: set[str] = set()


# ----- the graph -----


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in PACKAGES:
        parts.insert(0, "anywhere")  # installed as anywhere.bridge, anywhere.plugins, ...
    return ".".join(parts)


def source_files(*folders: str) -> dict[str, Path]:
    files = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ".egg-info" not in str(path):
                files[module_name(path)] = path
    return files


OURS = source_files(*PACKAGES)


def imports_of(name: str, path: Path) -> set[str]:
    """The modules ``name`` imports (``from a import b`` is ``a.b`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in OURS else target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in OURS.items()}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def plugin_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if parts[:2] == ["anywhere", "plugins"] and len(parts) > 2 else None


# ----- the checks -----


def test_no_plugin_imports_the_runtime():
    found = {
        plugin_of(name)
        for name, imported in GRAPH.items()
        if within(name, "anywhere.plugins")
        and any(within(m, "anywhere.bridge.runtime") for m in imported)
    }
    assert found - PLUGINS_IMPORTING_RUNTIME == set(), (
        "plugins must use anywhere.bridge.api, not Bridge"
    )
    assert PLUGINS_IMPORTING_RUNTIME - found == set(), "migrated: remove from the known list"


def test_only_tests_bench_and_test_helpers_import_the_test_harness():
    everything = source_files(*PACKAGES, "tests", "bench", "examples")
    found = set()
    for name, path in everything.items():
        allowed = (
            within(name, "anywhere.bridge.testing")
            or within(name, "tests")
            or within(name, "bench")
            or (within(name, "anywhere.plugins") and path.name == "testing.py")
            or (within(name, "examples") and "tests" in path.relative_to(ROOT).parts)
        )
        if not allowed and any(
            within(m, "anywhere.bridge.testing") for m in imports_of(name, path)
        ):
            found.add(name)
    assert found - IMPORTING_TESTING == set(), (
        "production code must not run on anywhere.bridge.testing"
    )
    assert IMPORTING_TESTING - found == set(), "fixed: remove from the known list"


def test_no_plugin_imports_another_plugin():
    found = set()
    for name, imported in GRAPH.items():
        mine = plugin_of(name)
        for module in imported:
            theirs = plugin_of(module)
            if mine and theirs and theirs != mine:
                found.add((mine, theirs))
    assert found - PLUGIN_TO_PLUGIN == set(), "plugins talk through hooks, not imports"
    assert PLUGIN_TO_PLUGIN - found == set(), "fixed: remove from the known list"


def circles_in_folders() -> set[tuple[str, ...]]:
    """Strongly connected groups (Tarjan) of the graph restricted to edges between
    modules of one folder. A package's ``__init__`` is left out: it is imported before
    any module of its folder anyway, and re-exports them lazily."""
    folder = {name: OURS[name].parent for name in OURS}
    nodes = [n for n in OURS if OURS[n].name != "__init__.py"]
    edges = {
        n: {m for m in GRAPH[n] if m in folder and m != n and m in nodes and folder[m] == folder[n]}
        for n in nodes
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.add(tuple(sorted(group)))

    for node in nodes:
        if node not in index:
            visit(node)
    return groups


def test_no_import_circles_between_modules_of_one_folder():
    found = circles_in_folders()
    folders = {OURS[circle[0]].parent.relative_to(ROOT).as_posix() for circle in found}
    new = {
        circle
        for circle in found
        if OURS[circle[0]].parent.relative_to(ROOT).as_posix() not in FOLDERS_WITH_CIRCLES
    }
    assert new == set(), "an import circle: give the shared part its own module"
    assert FOLDERS_WITH_CIRCLES - folders == set(), "no circle left: remove from the known list"


def test_the_graph_sees_imports_under_type_checking_and_relative_ones():
    assert "anywhere.bridge.api" in GRAPH["anywhere.bridge.events"]  # under TYPE_CHECKING
    assert "anywhere.bridge.services" in GRAPH["anywhere.bridge.runtime"]  # relative
    assert (
        "anywhere.plugins.drive.hookspecs" in GRAPH["anywhere.plugins.drive"]
    )  # inside a function
