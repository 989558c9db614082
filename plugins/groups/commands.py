"""``!group``: one command, one subcommand per action, each with its own ``--help``.

Subcommands that no running network connector can serve (``link``/``unlink`` without a
connector that links group chats) are declared ``available=linkable``: while it answers
False they are neither listed nor accepted.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from anywhere.bridge import CommandError, EventContext, argument
from anywhere.bridge.commands import Command, group

from .rooms import Invited, check_user_ids

if TYPE_CHECKING:
    from . import GroupsPlugin


ROOM_ARG = (
    ("--room",),
    {"metavar": "ROOM_ID", "help": "the group's room ID (default: the room you are in)"},
)


def build(plugin: GroupsPlugin) -> list[Command]:
    def linkable() -> bool:
        return bool(plugin.hub and plugin.hub.linkable_networks())

    groups = group(
        "group", help="Open a group with exactly the people a decision needs, and manage it"
    )

    @groups.subcommand(
        "create",
        help="create a group room and invite people: !group create NAME @a:server @b:server",
    )
    @argument("name", help="the group's name (quote it if it has spaces)")
    @argument("people", nargs="*", metavar="@PERSON", help="who to invite")
    @argument("--topic", help="the room topic")
    async def create_(ctx: EventContext, args: argparse.Namespace) -> None:
        await create(plugin, ctx, args)

    @groups.subcommand("add", help="invite people to a group")
    @argument("people", nargs="+", metavar="@PERSON")
    @argument(*ROOM_ARG[0], **ROOM_ARG[1])
    async def add_(ctx: EventContext, args: argparse.Namespace) -> None:
        await add(plugin, ctx, args)

    @groups.subcommand("remove", help="remove people from a group")
    @argument("people", nargs="+", metavar="@PERSON")
    @argument(*ROOM_ARG[0], **ROOM_ARG[1])
    async def remove_(ctx: EventContext, args: argparse.Namespace) -> None:
        await remove(plugin, ctx, args)

    @groups.subcommand("list", help="list the groups you are in")
    async def list_groups(ctx: EventContext, args: argparse.Namespace) -> None:
        await list_(plugin, ctx, args)

    @groups.subcommand(
        "link",
        help="bridge a group to a chat on another network, e.g. xmpp:room@conference.example.org",
        available=linkable,
    )
    @argument("address", help="NETWORK:ADDRESS")
    @argument(*ROOM_ARG[0], **ROOM_ARG[1])
    async def link_(ctx: EventContext, args: argparse.Namespace) -> None:
        await link(plugin, ctx, args)

    @groups.subcommand("unlink", help="stop bridging a group", available=linkable)
    @argument(*ROOM_ARG[0], **ROOM_ARG[1])
    async def unlink_(ctx: EventContext, args: argparse.Namespace) -> None:
        await unlink(plugin, ctx, args)

    return [groups]


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
