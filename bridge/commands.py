"""Bot commands: the ``@command`` decorator plugins use, and the parser behind it.

Each command has an argparse parser that raises instead of exiting, so every command
gets ``--help`` and precise errors for free::

    @command("hello", help="Greet someone")
    @argument("name", nargs="?", default="world")
    async def hello(ctx, args):
        await ctx.reply(f"Hello, {args.name}!")
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import EventContext

LEVELS = {"none": 0, "user": 1, "admin": 2}


class CommandError(Exception):
    """A command was used wrongly; ``usage`` is shown with the message."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`CommandError` instead of printing and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError(message, self.format_usage().strip())

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise CommandError(message or "invalid command", self.format_usage().strip())

    def print_help(self, file: Any = None) -> None:
        raise HelpRequested(self.format_help().strip())

    def print_usage(self, file: Any = None) -> None:
        raise HelpRequested(self.format_usage().strip())


Handler = Callable[["EventContext", argparse.Namespace], Awaitable[None]]


@dataclass
class Command:
    """A bot command. ``level`` is the permission level needed (``user`` or ``admin``)."""

    name: str
    handler: Handler
    help: str = ""
    level: str = "user"
    aliases: tuple[str, ...] = ()
    arguments: list[tuple[tuple, dict]] = field(default_factory=list)
    plugin: str = ""
    #: Skip the policy check (``bot.command``): for commands that are the way out of a
    #: refusal (``help``, ``verify``), so nobody is locked out.
    policy_exempt: bool = False
    #: Text shown after the arguments in ``!help NAME``, line breaks kept (a list of a
    #: command's actions, one a line).
    epilog: str = ""

    def parser(self, prefix: str = "!") -> CommandParser:
        raw = {"epilog": self.epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
        parser = CommandParser(
            prog=f"{prefix}{self.name}", description=self.help, **(raw if self.epilog else {})
        )
        for args, kwargs in self.arguments:
            parser.add_argument(*args, **kwargs)
        return parser

    def usage(self, prefix: str = "!") -> str:
        return self.parser(prefix).format_usage().strip().removeprefix("usage: ")

    def parse(self, argv: list[str], prefix: str = "!") -> argparse.Namespace:
        try:
            return self.parser(prefix).parse_args(argv)
        except argparse.ArgumentError as exc:
            raise CommandError(str(exc), "usage: " + self.usage(prefix)) from exc


def command(
    name: str, *, help: str = "", level: str = "user", aliases: tuple[str, ...] = ()
) -> Callable[[Handler | Command], Command]:
    """Turn ``async def handler(ctx, args)`` into a :class:`Command`."""
    if level not in ("user", "admin"):
        raise ValueError(f"command {name!r}: level must be 'user' or 'admin'")

    def decorate(func: Handler | Command) -> Command:
        if isinstance(func, Command):  # @command above @argument
            func.name, func.help, func.level, func.aliases = name, help, level, aliases
            return func
        pending = getattr(func, "__anywhere_arguments__", [])
        return Command(
            name,
            func,
            help or (func.__doc__ or "").strip().split("\n")[0],
            level,
            aliases,
            list(reversed(pending)),
        )

    return decorate


def argument(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """Add an argparse argument to a command (decorators apply bottom-up, order is kept)."""

    def decorate(func: Any) -> Any:
        if isinstance(func, Command):
            func.arguments.insert(0, (args, kwargs))
        else:
            func.__anywhere_arguments__ = [
                *getattr(func, "__anywhere_arguments__", []),
                (args, kwargs),
            ]
        return func

    return decorate


def split_command(body: str, prefix: str, *, prefix_optional: bool) -> list[str] | None:
    """Split a message into words if it is a command; None if it is not one.

    Raises CommandError for unbalanced quotes.
    """
    text = body.strip()
    if text.startswith(prefix):
        text = text[len(prefix) :]
    elif not prefix_optional:
        return None
    if not text or text[0].isspace():
        return None
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"could not read the command: {exc} (check your quotes)") from exc


def suggest(name: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def level_for(user_id: str, permissions: dict[str, str]) -> int:
    """The permission level of ``user_id``: exact ID, then server name, then ``*``."""
    if user_id in permissions:
        return LEVELS[permissions[user_id]]
    server = user_id.split(":", 1)[1] if ":" in user_id else ""
    if server in permissions:
        return LEVELS[permissions[server]]
    if "*" in permissions:
        return LEVELS[permissions["*"]]
    return 0
