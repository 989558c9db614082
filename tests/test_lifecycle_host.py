"""The lifecycle is given a :class:`LifecycleHost`, not the whole ``Bridge`` (issue 15):
what it hands to the plugins' hooks and the core's web app, typed, and nothing else."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from anywhere.bridge import lifecycle, web
from anywhere.bridge.lifecycle import Lifecycle, LifecycleHost

BRIDGE = Path(lifecycle.__file__).parent


def protocol_members(protocol: type) -> set[str]:
    members: set[str] = set()
    for base in protocol.__mro__:
        if base.__module__ in ("typing", "builtins"):
            continue
        members |= set(getattr(base, "__annotations__", {}))
        members |= {name for name in vars(base) if not name.startswith("_")}
    return members


async def test_the_bridge_has_every_member_of_the_lifecycles_host(plugin_kit):
    kit = await plugin_kit({})
    members = protocol_members(LifecycleHost)
    assert {"info", "authorize", "config", "plugins", "inbox", "health_checks"} <= members
    missing = [name for name in sorted(members) if not hasattr(kit.bridge, name)]
    assert missing == []
    assert inspect.signature(Lifecycle).parameters["host"].annotation == "LifecycleHost"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, under TYPE_CHECKING too (relative ones as ``.name``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_neither_the_lifecycle_nor_the_web_app_imports_the_runtime():
    for module in (lifecycle, web):
        imported = imported_modules(Path(module.__file__))
        assert not {".runtime", "anywhere.bridge.runtime"} & imported, module.__name__
