"""Bot commands: the ``@command`` decorator plugins use, and the parser behind it.

Each command has an argparse parser that raises instead of exiting, so every command
gets ``--help`` and precise errors for free::

    @command("hello", help="Greet someone")
    @argument("name", nargs="?", default="world")
    async def hello(ctx, args):
        await ctx.reply(f"Hello, {args.name}!")

A command with subcommands (``!drive ls``, ``!policy explain``) is a :func:`group`; each
subcommand is declared on it with ``@group.subcommand(...)`` and gets its own parser (an
argparse subparser), its own ``--help`` and, if it needs one, its own permission level::

    drive = group("drive", help="Shared folders")

    @drive.subcommand("ls", help="List a folder")
    @argument("path", nargs="?", default="")
    async def ls(ctx, args): ...

A command (or subcommand) declared with ``background=True`` runs as a durable job
(``bridge/jobs.py``) instead of on the event worker, with the same ``ctx`` and the same
handling of :class:`CommandError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
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
        #: The (sub)command whose arguments were wrong, as ``drive mv``; set by the parser.
        self.command = ""


class HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`CommandError` instead of printing and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A subparser's error is reported with the subparser's own usage, not its parent's.
        try:
            return super().parse_known_args(args, namespace)
        except argparse.ArgumentError as exc:
            self.error(str(exc))

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
    handler: Handler | None
    help: str = ""
    level: str = "user"
    aliases: tuple[str, ...] = ()
    arguments: list[tuple[tuple, dict]] = field(default_factory=list)
    plugin: str = ""
    #: Skip the policy check (``bot.command``): for commands that are the way out of a
    #: refusal (``help``, ``verify``), so nobody is locked out.
    policy_exempt: bool = False
    #: Text shown after the arguments in ``!help NAME``, line breaks kept.
    epilog: str = ""
    #: Run as a durable job beside the event worker (a slow service), not on it.
    background: bool = False
    #: ``{name: subcommand}`` of a :func:`group`, aliases included, in declaration order.
    subcommands: dict[str, Command] = field(default_factory=dict)
    #: The group a subcommand belongs to.
    parent: Command | None = None
    #: For a subcommand: whether it can be served now (a network connector that links
    #: groups is running); one that cannot is neither listed nor accepted.
    available: Callable[[], bool] | None = None
    #: Exceptions a handler raises that are refusals to answer like a CommandError (a
    #: plugin's own "not found", "not allowed"), for this command and its subcommands.
    refuses: tuple[type[Exception], ...] = ()

    @property
    def full_name(self) -> str:
        """``drive ls`` for a subcommand, ``drive`` for a command."""
        return f"{self.parent.full_name} {self.name}" if self.parent else self.name

    @property
    def top(self) -> Command:
        """The command as the router knows it (the group of a subcommand)."""
        return self.parent.top if self.parent else self

    def subcommand(
        self,
        name: str,
        *,
        help: str = "",
        level: str | None = None,
        aliases: tuple[str, ...] = (),
        background: bool = False,
        available: Callable[[], bool] | None = None,
    ) -> Callable[[Handler | Command], Command]:
        """Declare a subcommand of this group: ``@drive.subcommand("ls", help=...)`` above
        the ``@argument``s of ``async def handler(ctx, args)``. ``level`` defaults to the
        group's; ``available`` (asked each time; a method of the class for a group
        declared in a class body) hides it while it cannot be served."""

        def decorate(func: Handler | Command) -> Command:
            sub = command(
                name, help=help, level=level or self.level, aliases=aliases, background=background
            )(func)
            sub.parent = self
            sub.available = available
            for key in (name, *aliases):
                if key in self.subcommands or key == "help":
                    raise ValueError(f"command {self.name!r}: subcommand {key!r} given twice")
                self.subcommands[key] = sub
            return sub

        return decorate

    def bind(self, owner: Any) -> Command:
        """A copy whose handlers are methods of ``owner``: for commands declared with
        decorators in a class body (``async def ls(self, ctx, args)``)."""
        handler = self.handler.__get__(owner) if self.handler is not None else None
        bound = dataclasses.replace(self, handler=handler, subcommands={})
        for sub in {id(sub): sub for sub in self.subcommands.values()}.values():
            copy = sub.bind(owner)
            copy.parent = bound
            if sub.available is not None and _takes_one_argument(sub.available):
                copy.available = sub.available.__get__(owner)  # a method of the class
            for key in (sub.name, *sub.aliases):
                bound.subcommands[key] = copy
        return bound

    def listed_subcommands(self) -> list[Command]:
        """The subcommands that can be served now, once each (aliases left out)."""
        return [
            sub
            for key, sub in self.subcommands.items()
            if key == sub.name and (sub.available is None or sub.available())
        ]

    def parser(self, prefix: str = "!") -> CommandParser:
        epilog = self.epilog or self._subcommand_list(prefix)
        raw = {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
        if self.subcommands:
            raw["usage"] = f"{prefix}{self.full_name} SUBCOMMAND ..."
        parser = CommandParser(
            prog=f"{prefix}{self.full_name}", description=self.help, **(raw if epilog else {})
        )
        for args, kwargs in self.arguments:
            parser.add_argument(*args, **kwargs)
        if self.subcommands:
            choices = parser.add_subparsers(
                dest="subcommand",
                metavar="SUBCOMMAND",
                parser_class=CommandParser,
                help=argparse.SUPPRESS,  # listed once, with their arguments, in the epilog
            )
            for sub in self.listed_subcommands():
                child = sub.parser(prefix)
                choices.add_parser(
                    sub.name,
                    aliases=list(sub.aliases),
                    parents=[child],
                    add_help=False,
                    prog=child.prog,
                    description=child.description,
                    epilog=child.epilog,
                    formatter_class=child.formatter_class,
                ).set_defaults(command_=sub)
        return parser

    def _subcommand_list(self, prefix: str) -> str:
        """One line per subcommand with its arguments (what ``!help NAME`` shows)."""
        if not self.subcommands:
            return ""
        lines = ["subcommands:"]
        for sub in self.listed_subcommands():
            lines.append(f"  {sub.usage(prefix).replace(' [-h]', '')} — {sub.help}")
        lines.append(f"Send {prefix}{self.full_name} SUBCOMMAND --help for how to use one.")
        return "\n".join(lines)

    def usage(self, prefix: str = "!") -> str:
        if self.subcommands:
            return f"{prefix}{self.full_name} SUBCOMMAND ..."
        return self.parser(prefix).format_usage().strip().removeprefix("usage: ")

    def parse(self, argv: list[str], prefix: str = "!") -> argparse.Namespace:
        return self.resolve(argv, prefix)[1]

    def resolve(self, argv: list[str], prefix: str = "!") -> tuple[Command, argparse.Namespace]:
        """The command to run (a subcommand for a group) and its parsed arguments.

        A group alone, or followed by ``help``, raises :class:`HelpRequested` with its
        help (the list of its subcommands); an unknown subcommand is a CommandError that
        says how to see the list."""
        if self.subcommands:
            first = argv[0] if argv else "help"
            if first == "help":
                raise HelpRequested(self.parser(prefix).format_help().strip())
            listed = self.listed_subcommands()
            if not first.startswith("-") and self.subcommands.get(first) not in listed:
                names = ", ".join(sub.name for sub in listed)
                raise CommandError(
                    f"unknown action {first!r}: invalid choice: {first!r} (choose from {names});"
                    f" send {prefix}{self.full_name} help for the list",
                    "usage: " + self.usage(prefix),
                )
        target = self.subcommands.get(argv[0]) if argv and self.subcommands else None
        try:
            args = self.parser(prefix).parse_args(argv)
        except argparse.ArgumentError as exc:
            error = CommandError(str(exc), "usage: " + self.usage(prefix))
            error.command = self.full_name
            raise error from exc
        except CommandError as exc:
            exc.command = (target or self).full_name
            raise
        chosen = getattr(args, "command_", None) or self
        if hasattr(args, "command_"):
            del args.command_
        return chosen, args


def _takes_one_argument(func: Callable[..., Any]) -> bool:
    try:
        return len(inspect.signature(func).parameters) == 1
    except (TypeError, ValueError):
        return False


def group(
    name: str,
    *,
    help: str = "",
    level: str = "user",
    aliases: tuple[str, ...] = (),
    refuses: tuple[type[Exception], ...] = (),
) -> Command:
    """A command made of subcommands (declare them with ``@the_group.subcommand(...)``).

    ``refuses``: the plugin's own exceptions that are answered like a CommandError."""
    made = command(name, help=help, level=level, aliases=aliases)(None)
    made.refuses = refuses
    return made


def command(
    name: str,
    *,
    help: str = "",
    level: str = "user",
    aliases: tuple[str, ...] = (),
    background: bool = False,
) -> Callable[[Handler | Command | None], Command]:
    """Turn ``async def handler(ctx, args)`` into a :class:`Command`.

    ``background=True``: the handler runs as a durable job (see the module's docstring)."""
    if level not in ("user", "admin"):
        raise ValueError(f"command {name!r}: level must be 'user' or 'admin'")

    def decorate(func: Handler | Command | None) -> Command:
        if isinstance(func, Command):  # @command above @argument
            func.name, func.help, func.level, func.aliases = name, help, level, aliases
            func.background = background
            return func
        pending = getattr(func, "__anywhere_arguments__", [])
        return Command(
            name,
            func,
            help or (func.__doc__ or "").strip().split("\n")[0] if func else help,
            level,
            aliases,
            list(reversed(pending)),
            background=background,
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
