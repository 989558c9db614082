"""Anywhere: smart-work tools for Matrix clients, as an application service.

What plugin authors import::

    from bridge import hookimpl, command, argument, ConfigSection, Namespaces, Migrations
"""

from storage.migrations import Migrations

from .commands import Command, CommandError, argument, command
from .config import ConfigSection
from .events import EventContext, MatrixEvent
from .hookspecs import hookimpl
from .namespaces import Namespace, Namespaces

__version__ = "0.1.0"

__all__ = [
    "Command",
    "CommandError",
    "ConfigSection",
    "EventContext",
    "MatrixEvent",
    "Migrations",
    "Namespace",
    "Namespaces",
    "argument",
    "command",
    "hookimpl",
]
