"""Anywhere: smart-work tools for Matrix clients, as an application service.

What plugin authors import::

    from anywhere.bridge import hookimpl, command, argument, ConfigSection, ConfigError
    from anywhere.bridge import Namespaces, Migrations
    from anywhere.bridge import Decision, Host, CONTRACT_VERSION   # the typed surface:
    bridge/api.py

The names are imported on first use, so that ``anywhere`` subcommands which need none of
the runtime (the drive's sync client, ``anywhere policy test``) start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "CONTRACT_VERSION": ".api",
    "BadSignature": ".api",
    "BridgeInfo": ".api",
    "Decision": ".api",
    "Host": ".api",
    "MediaError": ".api",
    "Command": ".commands",
    "CommandError": ".commands",
    "argument": ".commands",
    "command": ".commands",
    "ConfigSection": ".config",
    "ConfigError": ".errors",
    "DoctorCheck": ".api",
    "EventContext": ".events",
    "MatrixEvent": ".events",
    "hookimpl": ".hookspecs",
    "hookspec": ".hookspecs",
    "Namespace": ".namespaces",
    "Namespaces": ".namespaces",
    "Migrations": "anywhere.storage.migrations",
}

__all__ = [
    "CONTRACT_VERSION",
    "BadSignature",
    "BridgeInfo",
    "Decision",
    "Host",
    "MediaError",
    "Command",
    "CommandError",
    "ConfigError",
    "ConfigSection",
    "DoctorCheck",
    "EventContext",
    "MatrixEvent",
    "Migrations",
    "Namespace",
    "Namespaces",
    "argument",
    "command",
    "hookimpl",
    "hookspec",
]

if TYPE_CHECKING:
    from anywhere.storage.migrations import Migrations

    from .api import (
        CONTRACT_VERSION,
        BadSignature,
        BridgeInfo,
        Decision,
        DoctorCheck,
        Host,
        MediaError,
    )
    from .commands import Command, CommandError, argument, command
    from .config import ConfigSection
    from .errors import ConfigError
    from .events import EventContext, MatrixEvent
    from .hookspecs import hookimpl, hookspec
    from .namespaces import Namespace, Namespaces


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
