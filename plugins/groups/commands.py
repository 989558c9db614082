"""``!group``: one command, one subcommand per action, each with its own ``--help``.

Subcommands that no running network connector can serve (``link``/``unlink`` without a
connector that links group chats) are left out of the parser, so they are neither
listed nor accepted.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge import CommandError, EventContext
from bridge.commands import Command, CommandParser

from .rooms import Invited, check_user_ids

if TYPE_CHECKING:
    from . import GroupsPlugin


@dataclass
class Sub:
    name: str
    help: str
    handler: Callable[[EventContext, argparse.Namespace], Awaitable[None]]
    arguments: list[tuple[tuple, dict]] = field(default_factory=list)
    #: shown only when this returns True (a connector can serve it)
    available: Callable[[], bool] = lambda: True


@dataclass
class GroupCommand(Command):
    #: the actions (not ``Command.subcommands``: these come and go with the connectors)
    actions: list[Sub] = field(default_factory=list)

    def visible(self) -> list[Sub]:
        return [sub for sub in self.actions if sub.available()]

    def parser(self, prefix: str = "!") -> CommandParser:
        parser = CommandParser(prog=f"{prefix}{self.name}", description=self.help)
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", parser_class=CommandParser
        )
        for sub in self.visible():
            sub_parser = actions.add_parser(sub.name, help=sub.help, description=sub.help)
            for args, kwargs in sub.arguments:
                sub_parser.add_argument(*args, **kwargs)
        return parser


ROOM_ARG = (
    ("--room",),
    {"metavar": "ROOM_ID", "help": "the group's room ID (default: the room you are in)"},
)


def build(plugin: GroupsPlugin) -> list[Command]:
    async def run(ctx: EventContext, args: argparse.Namespace) -> None:
        sub = next(s for s in command.visible() if s.name == args.action)
        await sub.handler(ctx, args)

    def linkable() -> bool:
        return bool(plugin.hub and plugin.hub.linkable_networks())

    command = GroupCommand(
        "group",
        run,
        help="Open a group with exactly the people a decision needs, and manage it",
        actions=[
            Sub(
                "create",
                "create a group room and invite people: !group create NAME @a:server @b:server",
                lambda ctx, args: create(plugin, ctx, args),
                [
                    (("name",), {"help": "the group's name (quote it if it has spaces)"}),
                    (("people",), {"nargs": "*", "metavar": "@PERSON", "help": "who to invite"}),
                    (("--topic",), {"help": "the room topic"}),
                ],
            ),
            Sub(
                "add",
                "invite people to a group",
                lambda ctx, args: add(plugin, ctx, args),
                [(("people",), {"nargs": "+", "metavar": "@PERSON"}), ROOM_ARG],
            ),
            Sub(
                "remove",
                "remove people from a group",
                lambda ctx, args: remove(plugin, ctx, args),
                [(("people",), {"nargs": "+", "metavar": "@PERSON"}), ROOM_ARG],
            ),
            Sub("list", "list the groups you are in", lambda ctx, args: list_(plugin, ctx, args)),
            Sub(
                "link",
                "bridge a group to a chat on another network, e.g. "
                "xmpp:room@conference.example.org",
                lambda ctx, args: link(plugin, ctx, args),
                [(("address",), {"help": "NETWORK:ADDRESS"}), ROOM_ARG],
                linkable,
            ),
            Sub(
                "unlink",
                "stop bridging a group",
                lambda ctx, args: unlink(plugin, ctx, args),
                [ROOM_ARG],
                linkable,
            ),
        ],
    )
    return [command]


async def target_room(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> str:
    if args.room:
        if not args.room.startswith("!") or len(args.room) < 2:
            raise CommandError(f"--room needs a room ID (it starts with !), not {args.room!r}")
        return args.room
    if await plugin.is_direct_with_bot(ctx.event.room_id):
        raise CommandError(
            "this is our direct chat: send the command in the group room, or name the group "
            "with --room !ROOM_ID (see !group list)"
        )
    return ctx.event.room_id


def _summary(done: Invited, verb: str) -> str:
    parts = []
    if done.invited:
        parts.append(f"{verb} {', '.join(done.invited)}.")
    for user_id, why in done.failed.items():
        parts.append(f"Could not {verb.lower().rstrip('d')} {user_id}: {why}.")
    return " ".join(parts)


async def create(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not name or len(name) > 255:
        raise CommandError("the group needs a name of 1 to 255 characters")
    people = check_user_ids(args.people)
    if len(people) > plugin.settings["max_invites"]:
        raise CommandError(
            f"{len(people)} people is more than the {plugin.settings['max_invites']} one "
            "command may invite (plugins.settings.groups.max_invites); add the rest with "
            "!group add"
        )
    sender = ctx.event.sender
    decision = await ctx.bridge.authorize(
        sender, "group.create", None, {"room_id": ctx.event.room_id, "name": name, "people": people}
    )
    if not decision.allowed:
        await ctx.reply(f"You may not create a group: {decision.reason}")
        return
    done = await plugin.rooms.create(sender, name, people, ctx.event.event_id, args.topic)
    link = f"https://matrix.to/#/{done.room_id}"
    text = f"Created the group {name!r}: {done.room_id} ({link}). You are its admin."
    if done.existing:
        text = f"The group {name!r} is {done.room_id} ({link})."
    summary = _summary(done, "Invited")
    await ctx.reply(f"{text} {summary}".strip())


async def add(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    room_id = await target_room(plugin, ctx, args)
    people = check_user_ids(args.people)
    if len(people) > plugin.settings["max_invites"]:
        raise CommandError(f"at most {plugin.settings['max_invites']} people at once")
    await plugin.rooms.require_manager(room_id, ctx.event.sender, "invite")
    done = await plugin.rooms.invite(room_id, people)
    await ctx.reply(_summary(done, "Invited") or "Nobody to invite.")


async def remove(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    room_id = await target_room(plugin, ctx, args)
    people = check_user_ids(args.people)
    await plugin.rooms.require_manager(room_id, ctx.event.sender, "kick", people)
    done = await plugin.rooms.remove(room_id, people, ctx.event.sender)
    await ctx.reply(_summary(done, "Removed") or "Nobody to remove.")


async def list_(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    groups = await plugin.rooms.groups_of(ctx.event.sender)
    if not groups:
        await ctx.reply("You are in no groups yet. Open one with !group create NAME @person ...")
        return
    lines = [f"Your groups ({len(groups)}):"]
    for room_id, name, membership in groups:
        portal = await plugin.hub.portal_for_room(room_id) if plugin.hub else None
        extra = f", bridged to {portal.network}:{portal.remote_id}" if portal else ""
        invited = " (invited: accept the invite to join)" if membership == "invite" else ""
        lines.append(f"- {name} — {room_id}{extra}{invited}")
    await ctx.reply("\n".join(lines))


async def link(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    room_id = await target_room(plugin, ctx, args)
    network, _, address = args.address.partition(":")
    if not address:
        raise CommandError(
            f"write the address as NETWORK:ADDRESS, e.g. xmpp:room@conference.example.org "
            f"(networks: {', '.join(plugin.hub.linkable_networks())})"
        )
    await plugin.rooms.require_manager(room_id, ctx.event.sender, "link")
    text = await plugin.hub.link(room_id, network, address, ctx.event.sender)
    await ctx.reply(text)


async def unlink(plugin: GroupsPlugin, ctx: EventContext, args: argparse.Namespace) -> None:
    room_id = await target_room(plugin, ctx, args)
    await plugin.rooms.require_manager(room_id, ctx.event.sender, "link")
    await ctx.reply(await plugin.hub.unlink(room_id))
