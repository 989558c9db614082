"""The event router: which plugin handles which event type and which command, the
dispatch of each event to its handlers, and the command runner that turns a message into
a command run (split, permission level, arguments, policy, on the event worker or as a
background job)."""

from __future__ import annotations

import argparse
import asyncio
import html
import inspect
from typing import TYPE_CHECKING, Any, Protocol

from . import metrics
from .api import QueuedJob
from .commands import LEVELS, Command, CommandError, HelpRequested, split_command, suggest
from .errors import ConfigError, PluginLoadError
from .events import EventContext, MatrixEvent
from .jobs import MAX_ATTEMPTS

if TYPE_CHECKING:
    from .api import Host
    from .pluginmanager import PluginManager

HANDLED_FLUSH_SECONDS = 0.05
#: The job kind of commands declared with ``background=True``.
BACKGROUND_JOB = "anywhere.command"

Route = tuple[str, Any]  # (plugin name, handler)


class EventRouter:
    """The command and event-handler registry, and the dispatch of each event to the
    handlers of its type (then those of every type, ``"*"``), one plugin at a time."""

    def __init__(self, host: Host, plugins: PluginManager, log: Any) -> None:
        self.host = host
        self.plugins = plugins
        self.log = log
        self.commands: dict[str, Command] = {}
        self.handlers: dict[str, list[Route]] = {}
        self._routes_source: dict[str, list[Route]] | None = None
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._handled_counts: dict[str, int] = {}

    def collect(self, command_levels: dict[str, str]) -> None:
        """Every plugin's commands and event handlers (``command_levels``: the
        operator's ``bridge.command_levels``, applied here)."""
        self.commands.clear()
        self.handlers.clear()
        self._routes_source = None
        for name, commands in self.plugins.call_each("anywhere_commands"):
            for cmd in commands or []:
                cmd.plugin = name
                for key in (cmd.name, *cmd.aliases):
                    if key in self.commands:
                        raise PluginLoadError(
                            f"plugin {name!r} defines command {key!r}, which plugin "
                            f"{self.commands[key].plugin!r} already defines"
                        )
                    self.commands[key] = cmd
        for name, level in command_levels.items():
            if name not in self.commands:
                raise ConfigError(
                    f"bridge.command_levels.{name}",
                    "the name of a command",
                    name,
                    f"known commands: {', '.join(sorted(self.commands))}",
                )
            self.commands[name].level = level
        for name, handlers in self.plugins.call_each("anywhere_event_handlers"):
            for event_type, handler in (handlers or {}).items():
                self.handlers.setdefault(event_type, []).append((name, handler))

    def routes_for(self, event_type: str) -> tuple[Route, ...]:
        """The handlers for one event type, then those for every type ("*"), worked out
        once per type (``handlers`` is read again when it is replaced)."""
        if self._routes_source is not self.handlers:
            self._routes_source, self._routes = self.handlers, {}
        routes = self._routes.get(event_type)
        if routes is None:
            routes = tuple(self.handlers.get(event_type, ())) + tuple(self.handlers.get("*", ()))
            if event_type in self.handlers:  # not for any type a sender makes up
                self._routes[event_type] = routes
        return routes

    async def dispatch(self, event: MatrixEvent) -> None:
        """Hand one event to every interested plugin; an exception stays with its plugin."""
        for plugin, handler in self.routes_for(event.type):
            try:
                result = handler(event, EventContext(self.host, event, plugin))
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                metrics.HANDLER_ERRORS.labels(plugin).inc()
                self.log.exception(
                    "plugin handler failed",
                    plugin=plugin,
                    event_type=event.type,
                    event_id=event.event_id,
                    room_id=event.room_id,
                    txn_id=event.txn_id,
                )
        # counted here, added to the Prometheus counter at most every 50 ms: a counter's
        # increment takes a lock, a fifth of what dispatching an event costs
        counts = self._handled_counts
        counts[event.type] = counts.get(event.type, 0) + 1
        if len(counts) == 1 and counts[event.type] == 1:
            asyncio.get_running_loop().call_later(HANDLED_FLUSH_SECONDS, self.flush_handled)

    def flush_handled(self) -> None:
        """Add the events handled since the last flush to the Prometheus counter."""
        counts, self._handled_counts = self._handled_counts, {}
        for event_type, count in counts.items():
            metrics.events_handled(event_type).inc(count)


class DirectRooms(Protocol):
    """Which rooms are direct chats with the bot (the core plugin's ``RoomBook``)."""

    def known_direct(self, room_id: str) -> bool | None: ...

    async def is_direct(self, room_id: str) -> bool: ...


class CommandRunner:
    """Turns a message into a command run: splits it (the prefix is optional in direct
    chats), checks the sender's level, parses the arguments (a group's subcommand
    included), asks the policy (``bot.command``) unless the command is exempt, and runs
    the handler on the event worker — or stores a durable job for a ``background``
    command, which :meth:`run_in_background` runs with the same context."""

    def __init__(self, host: Host, router: EventRouter, rooms: DirectRooms, prefix: str) -> None:
        self.host = host
        self.router = router
        self.rooms = rooms
        self.prefix = prefix

    async def handle(self, event: MatrixEvent, ctx: EventContext, body: str) -> None:
        """Run the command in a message, or answer what is wrong with it (a message that
        is no command is let go)."""
        bridge = self.host
        prefix = self.prefix
        direct = self.rooms.known_direct(event.room_id)
        if direct is None:
            direct = await self.rooms.is_direct(event.room_id)
        try:
            words = split_command(body, prefix, prefix_optional=direct)
        except CommandError as exc:
            await ctx.reply(exc.message)
            return
        if not words:
            return
        level = bridge.permissions.level(event.sender)
        if level == 0:
            return  # not permitted to use the bot at all: ignore, as Synapse lets them talk
        name, argv = words[0], words[1:]
        cmd = self.router.commands.get(name)
        if cmd is None:
            metrics.COMMANDS.labels("unknown", "unknown").inc()
            await ctx.reply(self.unknown_text(name, event.sender))
            return
        if LEVELS[cmd.level] > level:
            metrics.COMMANDS.labels(cmd.name, "denied").inc()
            await ctx.reply(self.needs_level(cmd))
            return
        try:
            chosen, args = cmd.resolve(argv, prefix)
        except HelpRequested as exc:
            await ctx.reply(exc.text, f"<pre>{html.escape(exc.text)}</pre>")
            return
        except CommandError as exc:
            metrics.COMMANDS.labels(cmd.name, "malformed").inc()
            usage = exc.usage if exc.usage.startswith("usage:") else f"usage: {exc.usage}"
            how = f"{prefix}help {cmd.name}"
            if exc.command and exc.command != cmd.name:  # a subcommand's own help
                how = f"{prefix}{exc.command} --help"
            await ctx.reply(f"{prefix}{cmd.name}: {exc.message}\n{usage}\nSend {how} for details.")
            return
        if LEVELS[chosen.level] > level:
            metrics.COMMANDS.labels(cmd.name, "denied").inc()
            await ctx.reply(self.needs_level(chosen))
            return
        cmd_ctx = EventContext(bridge, event, cmd.plugin)
        if not (cmd.policy_exempt or chosen.policy_exempt):
            decision = await bridge.authorize(
                event.sender,
                "bot.command",
                cmd.name,
                {"room_id": event.room_id, "command": cmd.name, "subcommand": chosen.full_name},
            )
            if not decision.allowed:
                metrics.COMMANDS.labels(cmd.name, "policy").inc()
                await cmd_ctx.reply(f"{prefix}{cmd.name} is not allowed: {decision.reason}")
                return
        if chosen.background:
            await bridge.jobs.enqueue(
                BACKGROUND_JOB,
                {"event": event.raw, "command": cmd.name, "argv": argv},
                key=f"{BACKGROUND_JOB}:{event.event_id or cmd_ctx.next_txn_id()}",
            )
            return
        await self.run(chosen, cmd_ctx, args)

    def needs_level(self, cmd: Command) -> str:
        return (
            f"{self.prefix}{cmd.full_name} needs the {cmd.level} permission level, "
            "which you don't have. Ask the bridge operator."
        )

    async def run(
        self, chosen: Command, ctx: EventContext, args: argparse.Namespace, *, last: bool = True
    ) -> None:
        """Run a command's handler: a CommandError is answered as the refusal it is, any
        other error is logged and the person told (on the last try, for a background
        command: a job that fails is tried again)."""
        prefix, name, plugin = self.prefix, chosen.top.name, chosen.top.plugin
        try:
            await chosen.handler(ctx, args)
            metrics.COMMANDS.labels(name, "ok").inc()
        except CommandError as exc:
            metrics.COMMANDS.labels(name, "refused").inc()
            await ctx.reply(f"{prefix}{name}: {exc.message}")
        except chosen.top.refuses as exc:
            metrics.COMMANDS.labels(name, "refused").inc()
            await ctx.reply(f"{prefix}{name}: {exc}")
        except Exception:
            metrics.COMMANDS.labels(name, "error").inc()
            metrics.HANDLER_ERRORS.labels(plugin).inc()
            ctx.log.exception("command failed", command=chosen.full_name)
            if not last:
                raise
            await ctx.reply(
                f"{prefix}{name} failed because of an error in the "
                f"{plugin} plugin. The operator can find it in the logs "
                f"(event {ctx.event.event_id})."
            )

    async def run_in_background(self, job: QueuedJob) -> None:
        """A ``background=True`` command, as a job: parsed again from the event, run with
        the context it would have had on the event worker (its sends carry the same
        transaction ids, so a job run twice answers once)."""
        event = MatrixEvent(job.payload["event"])
        cmd = self.router.commands.get(job.payload["command"])
        if cmd is None:  # its plugin was disabled since: kept as a failed job, not dropped
            raise LookupError(f"no command {job.payload['command']!r} any more")
        chosen, args = cmd.resolve(job.payload["argv"], self.prefix)
        ctx = EventContext(self.host, event, cmd.plugin)
        await self.run(chosen, ctx, args, last=job.attempt >= MAX_ATTEMPTS)

    def help_text(self, user_id: str, name: str | None) -> tuple[str, str]:
        bridge, prefix = self.host, self.prefix
        level = bridge.permissions.level(user_id)
        if name:
            cmd = self.router.commands.get(name.removeprefix(prefix))
            if cmd is None or LEVELS[cmd.level] > level:
                return self.unknown_text(name.removeprefix(prefix), user_id), ""
            text = cmd.parser(prefix).format_help().strip()
            return text, f"<pre>{html.escape(text)}</pre>"
        by_plugin: dict[str, list[Command]] = {}
        for key, cmd in sorted(self.router.commands.items()):
            if key == cmd.name and LEVELS[cmd.level] <= level:
                by_plugin.setdefault(cmd.plugin, []).append(cmd)
        lines, parts = [], []
        for plugin in sorted(by_plugin, key=lambda p: (p != "core", p)):
            lines.append(f"{plugin}:")
            items = []
            for cmd in by_plugin[plugin]:
                lines.append(f"  {prefix}{cmd.usage(prefix).removeprefix(prefix)} — {cmd.help}")
                items.append(
                    f"<li><code>{html.escape(cmd.usage(prefix))}</code> — "
                    f"{html.escape(cmd.help)}</li>"
                )
            parts.append(f"<b>{html.escape(plugin)}</b><ul>{''.join(items)}</ul>")
        footer = f"Send {prefix}help COMMAND for the details of one command."
        return "\n".join([*lines, footer]), "".join(parts) + html.escape(footer)

    def unknown_text(self, name: str, user_id: str) -> str:
        bridge, prefix = self.host, self.prefix
        level = bridge.permissions.level(user_id)
        known = [k for k, c in self.router.commands.items() if LEVELS[c.level] <= level]
        guess = suggest(name, known)
        text = f"Unknown command {prefix}{name}."
        if guess:
            text += f" Did you mean {prefix}{guess}?"
        return text + f" Send {prefix}help for the list."
