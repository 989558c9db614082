"""``!drive SUBCOMMAND ...``: the drive from any Matrix client.

In a folder's room, paths are inside that folder (``!drive ls docs``); in a direct chat
with the bot they start with the folder's name (``drive ls Work/docs``). Each subcommand
has its own parser, so ``!drive mv --help`` and precise errors come for free.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from anywhere.bridge import Command, CommandError, EventContext, argument
from anywhere.bridge.commands import group

from .errors import DriveError, NotFound
from .model import Folder, Node, human_size
from .names import InvalidName, split_path

if TYPE_CHECKING:
    from . import DrivePlugin


def arg(name: str, **kwargs: Any) -> Any:
    """A positional argument shown in capitals (``!drive mv SOURCE DESTINATION``)."""
    shown = {} if "choices" in kwargs else {"metavar": name.upper()}
    return argument(name, **shown, **kwargs)


OPTIONAL = {"nargs": "?", "default": ""}


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def describe(node: Node) -> str:
    if node.is_dir:
        return f"  {node.name}/"
    return f"  {node.name} — {human_size(node.size)}, v{node.version_no}, {when(node.updated_at)}"


class DriveCommands:
    drive = group(
        "drive",
        help="Shared folders: ls, get, mkdir, mv, rm, invite, share, ...",
        refuses=(DriveError, InvalidName),
    )

    def __init__(self, plugin: DrivePlugin) -> None:
        self.plugin = plugin

    @property
    def service(self):
        return self.plugin.drive

    @property
    def rooms(self):
        return self.plugin.rooms

    def command(self) -> Command:
        return self.drive.bind(self)

    # ----- where things are -----
    async def where(self, ctx: EventContext, path: str) -> tuple[Folder, str]:
        """The folder and the path inside it: the room's folder, or the first name."""
        folder = await self.service.access.folder_for_room(ctx.event.room_id)
        if folder is not None:
            return folder, path
        if not path:
            raise CommandError("name a folder (send !drive ls to see yours)")
        split_path(path)
        name, _, rest = path.partition("/")
        return await self.service.access.find_folder(ctx.event.sender, name), rest

    async def node_at(
        self, ctx: EventContext, path: str, *, write: bool = False
    ) -> tuple[Folder, Node, str]:
        folder, rel = await self.where(ctx, path)
        node, rel = await self.service.resolve(ctx.event.sender, folder, rel, write=write)
        return folder, node, rel

    # ----- subcommands -----
    @drive.subcommand("ls", help="List your folders, or a folder's content")
    @arg("path", **OPTIONAL)
    async def do_ls(self, ctx: EventContext, args: argparse.Namespace) -> None:
        room_folder = await self.service.access.folder_for_room(ctx.event.room_id)
        if not args.path and room_folder is None:
            await ctx.reply(await self.folder_list(ctx.event.sender))
            return
        folder, node, rel = await self.node_at(ctx, args.path)
        children = await self.service.tree.children(node)
        title = f"{folder.name}/{rel}".rstrip("/")
        if not children:
            await ctx.reply(f"{title}: empty")
            return
        await ctx.reply("\n".join([f"{title}:", *(describe(n) for n in children)]))

    async def folder_list(self, user: str) -> str:
        folders = await self.service.access.folders_of(user)
        if not folders:
            return "You have no folders yet. Create one with: !drive mkdir NAME"
        lines = ["Your folders:"]
        for folder, member in folders:
            if member.state == "invited":
                lines.append(
                    f"  {folder.name}/ — invited as {member.role} by {member.invited_by}: "
                    "join its room to accept"
                )
            elif member.role == "owner":
                lines.append(f"  {folder.name}/ — yours")
            else:
                lines.append(f"  {folder.name}/ — {member.role}, shared by {folder.owner}")
        return "\n".join(lines)

    @drive.subcommand("mkdir", help="Create a folder (a new shared folder: just a name, in a DM)")
    @arg("path")
    async def do_mkdir(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder = await self.service.access.folder_for_room(ctx.event.room_id)
        parts = split_path(args.path)
        if folder is None and len(parts) == 1:
            created = await self.rooms.create_folder(ctx.event.sender, parts[0])
            await ctx.reply(
                f"Created the folder {created.name}. I invited you to its room: files sent "
                "there are saved in it. Share it with: !drive invite "
                f"{created.name} @someone:server [editor|viewer]"
            )
            return
        folder, rel = await self.where(ctx, args.path)
        await self.service.access.require(folder, ctx.event.sender, write=True)
        await self.service.tree.mkdir(folder, split_path(rel), ctx.event.sender)
        await ctx.reply(f"Created {folder.name}/{rel}.")

    @drive.subcommand("get", help="Post a file from the drive into this room")
    @arg("path")
    async def do_get(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, node, rel = await self.node_at(ctx, args.path)
        if node.is_dir:
            raise CommandError(f"{folder.name}/{rel} is a folder; get works on files")
        room = ctx.event.room_id
        if room != folder.room_id and await self.rooms.others_in(room, ctx.event.sender):
            await self.service.check_share(
                ctx.event.sender,
                f"{folder.name}/{rel}",
                await self.service.kinds_of(node),
                {"room_id": room},
            )
        await self.rooms.post_file(ctx, room, node, ctx.event.sender)

    @drive.subcommand("share", help="Post a file into another room you are in (#alias or !room_id)")
    @arg("path")
    @arg("room")
    async def do_share(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, node, rel = await self.node_at(ctx, args.path)
        if node.is_dir:
            raise CommandError(f"{folder.name}/{rel} is a folder: share folders with !drive invite")
        room = args.room
        if room.startswith("#"):
            try:
                room = str((await self.plugin.bridge.bot.resolve_room_alias(room)).room_id)
            except Exception as exc:
                raise CommandError(f"no room {args.room} ({exc})") from exc
        bot = self.plugin.bridge.info.bot_user_id
        if not await self.rooms.is_joined(room, bot):
            raise CommandError(f"I am not in {args.room}: invite me there first")
        if not await self.rooms.is_joined(room, ctx.event.sender):
            raise CommandError(f"you are not a member of {args.room}")
        kinds = await self.service.kinds_of(node)
        await self.service.check_share(
            ctx.event.sender, f"{folder.name}/{rel}", kinds, {"room_id": room}
        )
        how = await self.rooms.post_file(ctx, room, node, ctx.event.sender)
        what = "a link to it" if how == "link" else "it"
        await ctx.reply(f"Shared {node.name} into {args.room} (posted {what}).")

    @drive.subcommand("mv", help="Move or rename")
    @arg("source")
    @arg("destination")
    async def do_mv(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, node, rel = await self.node_at(ctx, args.source, write=True)
        dest_folder, dest = await self.where(ctx, args.destination)
        parts = split_path(dest, allow_empty=dest_folder.id != folder.id)
        try:
            target = await self.service.tree.lookup(dest_folder, parts)
        except NotFound:
            target = None
        if target is not None and target.is_dir and target.id != node.id:
            parent, name = target, node.name
        else:
            parent, name = await self.service.tree.lookup(dest_folder, parts[:-1]), parts[-1]
        if dest_folder.id == folder.id:
            moved = await self.service.tree.move(folder, node, parent, name, ctx.event.sender)
            await ctx.reply(f"Moved {rel} to {await self.service.tree.path_of(moved)}.")
            return
        moved = await self.service.move_to_folder(
            ctx.event.sender, folder, node, dest_folder, parent, name
        )
        where = await self.service.tree.path_of(moved)
        await ctx.reply(
            f"Moved {folder.name}/{rel} to {dest_folder.name}/{where}; the original is in "
            f"the trash of {folder.name} with its older versions."
        )

    @drive.subcommand("rm", help="Put a file or folder in the trash")
    @arg("path")
    async def do_rm(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, node, rel = await self.node_at(ctx, args.path, write=True)
        await self.service.tree.trash(folder, node, ctx.event.sender)
        await ctx.reply(f"Moved {folder.name}/{rel} to the trash (restore it with !drive restore).")

    @drive.subcommand("trash", help="List what is in the trash")
    @arg("folder", **OPTIONAL)
    async def do_trash(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, _ = await self.where(ctx, args.folder)
        await self.service.access.require(folder, ctx.event.sender)
        items = await self.service.tree.trashed(folder)
        if not items:
            await ctx.reply(f"The trash of {folder.name} is empty.")
            return
        lines = [f"Trash of {folder.name}:"]
        for node in items:
            path = await self.service.tree.path_of(node)
            lines.append(
                f"  {path}{'/' if node.is_dir else ''} — id {node.id[:8]}, {when(node.trashed_at)}"
            )
        await ctx.reply("\n".join(lines))

    @drive.subcommand(
        "empty", help="Empty a folder's trash for good, freeing quota (the folder's owner)"
    )
    @arg("folder", **OPTIONAL)
    async def do_empty(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, _ = await self.where(ctx, args.folder)
        await self.service.access.require(folder, ctx.event.sender)
        count, freed = await self.service.empty_trash(ctx.event.sender, folder)
        if not count:
            await ctx.reply(f"The trash of {folder.name} is empty already.")
            return
        things = "item" if count == 1 else "items"
        await ctx.reply(
            f"Emptied the trash of {folder.name}: {count} {things} deleted for good, "
            f"{human_size(freed)} of your quota freed."
        )

    @drive.subcommand(
        "restore", help="Take something out of the trash (its path, or its id from trash)"
    )
    @arg("item")
    async def do_restore(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder = await self.service.access.folder_for_room(ctx.event.room_id)
        item = args.item
        if folder is None:
            name, _, item = item.partition("/")
            folder = await self.service.access.find_folder(ctx.event.sender, name)
        await self.service.access.require(folder, ctx.event.sender, write=True)
        match = None
        for node in await self.service.tree.trashed(folder):
            if (
                node.id.startswith(item)
                and len(item) >= 6
                or await self.service.tree.path_of(node) == item
            ):
                match = node
                break
        if match is None:
            raise CommandError(f"nothing called {item!r} in the trash of {folder.name}")
        restored = await self.service.restore(ctx.event.sender, folder, match)
        await ctx.reply(f"Restored {folder.name}/{await self.service.tree.path_of(restored)}.")

    @drive.subcommand("versions", help="List a file's versions")
    @arg("path")
    async def do_versions(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, node, rel = await self.node_at(ctx, args.path)
        if node.is_dir:
            raise CommandError(f"{folder.name}/{rel} is a folder; versions are kept for files")
        lines = [f"Versions of {folder.name}/{rel}:"]
        for v in await self.service.tree.versions(node):
            current = " (current)" if v.number == node.version_no else ""
            lines.append(
                f"  {v.number}: {human_size(v.size)}, {when(v.created_at)}, {v.author}{current}"
            )
        await ctx.reply("\n".join(lines))

    @drive.subcommand("revert", help="Make an old version current again")
    @arg("path")
    @arg("rev", type=int)
    async def do_revert(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, rel = await self.where(ctx, args.path)
        node = await self.service.revert(ctx.event.sender, folder, rel, args.rev)
        await ctx.reply(
            f"{folder.name}/{rel} is back to version {args.rev} "
            f"(saved as version {node.version_no})."
        )

    @drive.subcommand("quota", help="Show how much of your quota you use")
    async def do_quota(self, ctx: EventContext, args: argparse.Namespace) -> None:
        quota = await self.service.quota(ctx.event.sender)
        percent = 100 * quota.used / quota.limit
        await ctx.reply(
            f"You use {human_size(quota.used)} of {human_size(quota.limit)} ({percent:.1f}%), "
            "old versions and the trash included."
        )

    async def folder_and_user(
        self, ctx: EventContext, args: argparse.Namespace
    ) -> tuple[Folder, str, str | None]:
        """``FOLDER @user [role]``, or ``@user [role]`` in the folder's room."""
        values = [v for v in (args.folder, args.user, getattr(args, "role", None)) if v]
        room_folder = await self.service.access.folder_for_room(ctx.event.room_id)
        if values and values[0].startswith("@") and room_folder is not None:
            folder, rest = room_folder, values
        else:
            folder = await self.service.access.find_folder(ctx.event.sender, values[0])
            rest = values[1:]
        if not rest or not rest[0].startswith("@") or ":" not in rest[0]:
            raise CommandError("name the person as @user:server")
        role = rest[1] if len(rest) > 1 else None
        return folder, rest[0], role

    @drive.subcommand(
        "invite", help="Share a folder: invite someone (they accept by joining its room)"
    )
    @arg("folder", help="the folder (leave out in the folder's room)")
    @arg("user", nargs="?")
    @arg("role", nargs="?", choices=["editor", "viewer"])
    async def do_invite(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, user, role = await self.folder_and_user(ctx, args)
        await ctx.reply(await self.rooms.invite(folder, ctx.event.sender, user, role or "editor"))

    @drive.subcommand("revoke", help="Stop sharing a folder with someone")
    @arg("folder")
    @arg("user", nargs="?")
    async def do_revoke(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, user, _ = await self.folder_and_user(ctx, args)
        await ctx.reply(await self.rooms.revoke(folder, ctx.event.sender, user))

    @drive.subcommand("leave", help="Leave a folder shared with you")
    @arg("folder", **OPTIONAL)
    async def do_leave(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, _ = await self.where(ctx, args.folder)
        await ctx.reply(await self.rooms.leave(folder, ctx.event.sender))

    @drive.subcommand(
        "apppassword",
        help="App passwords for WebDAV (desktop mounts, rclone): create NAME, list, revoke NAME",
    )
    @arg("verb", choices=["create", "list", "revoke"])
    @arg("name", nargs="?", default="")
    async def do_apppassword(self, ctx: EventContext, args: argparse.Namespace) -> None:
        """A password is shown once, so only in the person's direct chat with the bot."""
        from .webdav.passwords import AppPasswords

        store, user = AppPasswords(self.plugin.bridge.db), ctx.event.sender
        if args.verb == "list":
            found = await store.list(user)
            if not found:
                await ctx.reply(
                    "You have no app passwords. Make one: !drive apppassword create NAME"
                )
                return
            lines = ["Your app passwords (for WebDAV):"]
            for p in found:
                used = f"last used {when(p.last_used_at)}" if p.last_used_at else "never used"
                lines.append(f"  {p.name} — made {when(p.created_at)}, {used}")
            await ctx.reply("\n".join(lines))
            return
        if not args.name:
            raise CommandError(f"name the app password: !drive apppassword {args.verb} NAME")
        if args.verb == "revoke":
            await store.revoke(user, args.name)
            await ctx.reply(f"Revoked the app password {args.name}: it no longer signs in.")
            return
        if not await self.plugin.bridge.direct_chats.is_direct(ctx.event.room_id):
            raise CommandError(
                "an app password is shown only once, so I make them only in your direct chat "
                "with me: send the command there"
            )
        secret = await store.create(user, args.name)
        url = f"{self.plugin.bridge.info.bridge_url}/dav/"
        public = self.service.settings.public_url
        if public:
            url = f"{public.rstrip('/')}/dav/"
        await ctx.reply(
            f"App password {args.name} for WebDAV (shown this once; revoke it with "
            f"!drive apppassword revoke {args.name}):\n  address: {url}\n  user name: {user}\n"
            f"  password: {secret}\nIt stays in this chat's history: revoke it if someone "
            "else may read this chat."
        )

    @drive.subcommand("members", help="Who has a folder, and who is invited")
    @arg("folder", **OPTIONAL)
    async def do_members(self, ctx: EventContext, args: argparse.Namespace) -> None:
        folder, _ = await self.where(ctx, args.folder)
        await self.service.access.require(folder, ctx.event.sender)
        lines = [f"{folder.name}:"]
        for m in await self.service.access.members(folder.id):
            if m.state in ("joined", "invited"):
                state = "" if m.state == "joined" else " (invited, not accepted yet)"
                lines.append(f"  {m.user_id} — {m.role}{state}")
        await ctx.reply("\n".join(lines))
