"""The runtime's own plugin: ``help``, ``jobs``, the commands in messages handed to the
command runner (``bridge/router.py``), and the bot's room manners (join when a permitted
person invites, decline otherwise, and never stay silent in an encrypted room it cannot
read)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from .api import Host, QueuedJob
from .commands import (
    Command,
    CommandError,
    argument,
    command,
)
from .events import EventContext, MatrixEvent
from .hookspecs import hookimpl
from .router import BACKGROUND_JOB, CommandRunner

if TYPE_CHECKING:
    from .config import Config
    from .crypto import Encryption
    from .router import EventRouter

COMMAND_MSGTYPES = ("m.text",)
ENCRYPTED_NOTICE = (
    "I can't read encrypted messages yet, so I won't see commands sent in this room. "
    "I've opened an unencrypted direct chat with {user}: send your commands there."
)


class CoreHost(Host, Protocol):
    """What the core plugin gets as ``bridge``: the plugin API (:class:`Host`) and the
    parts of the runtime it works with (the runtime's ``Bridge`` is one)."""

    config: Config
    router: EventRouter
    encryption: Encryption


class RoomBook:
    """What the bot remembers about rooms (direct chats, encryption notices)."""

    def __init__(self, bridge: Host) -> None:
        self.bridge = bridge
        self._direct: dict[str, bool] = {}

    def known_direct(self, room_id: str) -> bool | None:
        """``is_direct`` without a database query; None when not known yet."""
        return self._direct.get(room_id)

    async def is_direct(self, room_id: str) -> bool:
        if room_id not in self._direct:
            value = await self.bridge.db.fetchval(
                "SELECT is_direct FROM bot_room WHERE room_id = $1", room_id
            )
            self._direct[room_id] = bool(value)
        return self._direct[room_id]

    async def remember(self, room_id: str, **fields: Any) -> None:
        await self.bridge.db.execute(
            "INSERT INTO bot_room (room_id) VALUES ($1) ON CONFLICT (room_id) DO NOTHING", room_id
        )
        for key, value in fields.items():
            await self.bridge.db.execute(
                f"UPDATE bot_room SET {key} = $2 WHERE room_id = $1", room_id, value
            )
        self._direct.pop(room_id, None)

    def forget(self, room_id: str) -> None:
        """Drop what is cached of ``room_id`` (it was recorded elsewhere)."""
        self._direct.pop(room_id, None)

    async def claim_encrypted_notice(self, room_id: str) -> bool:
        """True the first time only: the notice is given once per room."""
        await self.remember(room_id, encrypted=True)
        status = await self.bridge.db.execute(
            "UPDATE bot_room SET encrypted_notice = TRUE WHERE room_id = $1 "
            "AND NOT encrypted_notice",
            room_id,
        )
        if isinstance(status, str):
            return status.rsplit(" ", 1)[-1] != "0"
        return getattr(status, "rowcount", 0) > 0


class CorePlugin:
    def __init__(self) -> None:
        self.bridge: CoreHost | None = None
        self.rooms: RoomBook | None = None

    @hookimpl
    def anywhere_startup(self, bridge: CoreHost) -> None:
        self.bridge = bridge
        self.rooms = RoomBook(bridge)
        self.prefix = bridge.info.command_prefix
        self.runner = CommandRunner(bridge, bridge.router, self.rooms, self.prefix)

    @hookimpl
    def anywhere_commands(self) -> list[Command]:
        return [self.help_command(), self.jobs_command()]

    @hookimpl
    def anywhere_job_handlers(self) -> dict[str, Any]:
        return {BACKGROUND_JOB: self.run_in_background}

    async def run_in_background(self, job: QueuedJob) -> None:
        await self.runner.run_in_background(job)

    @hookimpl
    def anywhere_event_handlers(self) -> dict[str, Any]:
        return {
            "m.room.message": self.on_message,
            "m.room.member": self.on_member,
            "m.room.encrypted": self.on_encrypted,
            "m.room.encryption": self.on_encrypted,
        }

    # ----- commands -----
    def help_command(self) -> Command:
        @command("help", help="List the commands, or show how to use one")
        @argument("command", nargs="?", help="a command name")
        async def help_(ctx: EventContext, args: argparse.Namespace) -> None:
            await ctx.reply(*self.runner.help_text(ctx.event.sender, args.command))

        help_.policy_exempt = True
        return help_

    def jobs_command(self) -> Command:
        @command(
            "jobs",
            help="Background jobs: how many wait, which failed; retry failed ones",
            level="admin",
        )
        @argument("action", nargs="?", choices=["list", "retry"], default="list")
        @argument("job", nargs="?", help="with retry: a failed job's number, or all")
        async def jobs_(ctx: EventContext, args: argparse.Namespace) -> None:
            await ctx.reply(await self.jobs_text(args.action, args.job))

        return jobs_

    async def jobs_text(self, action: str, which: str | None) -> str:
        jobs, prefix = self.bridge.jobs, self.prefix
        if action == "retry":
            how = f"{prefix}jobs retry NUMBER, or {prefix}jobs retry all"
            if which is None:
                raise CommandError(f"say which failed job to retry: {how}")
            if which != "all" and not (which.isascii() and which.isdigit() and len(which) <= 18):
                raise CommandError(f"{which!r} is not a job number: {how}")
            count = await jobs.retry(None if which == "all" else int(which))
            if not count:
                return f"No failed job {'' if which == 'all' else '#' + which + ' '}to retry."
            return f"Queued {count} failed job{'s' if count != 1 else ''} again."
        failed = await jobs.failed()
        lines = [f"Background jobs: {await jobs.waiting()} waiting, {len(failed)} failed."]
        for job in failed:
            lines.append(
                f"#{job['id']} {job['kind']} ({job['key']}) — {job['attempts']} tries, "
                f"last error: {job['last_error']}"
            )
        if failed:
            lines.append(f"Retry with {prefix}jobs retry NUMBER or {prefix}jobs retry all.")
        return "\n".join(lines)

    # ----- events -----
    def on_message(self, event: MatrixEvent, ctx: EventContext) -> Awaitable[None] | None:
        """Every message in every room the bot is in passes here: what cannot be a
        command is let go without starting a coroutine."""
        content = event.content
        if content.get("msgtype") not in COMMAND_MSGTYPES or self.bridge.is_ours(event.sender):
            return None
        body = content.get("body")
        if not isinstance(body, str) or "m.new_content" in content:
            return None
        if self.rooms.known_direct(event.room_id) is False and not body.lstrip().startswith(
            self.prefix
        ):
            return None  # no prefix, and not a direct chat (where it is optional)
        return self.runner.handle(event, ctx, body)

    async def on_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        bridge = self.bridge
        if event.state_key != bridge.config.bot_mxid:
            return
        membership = event.content.get("membership")
        if membership != "invite":
            return
        level = bridge.permissions.level(event.sender)
        if level == 0:
            ctx.log.info("declining invite from a user without permission", sender=event.sender)
            await bridge.bot.leave_room(event.room_id, reason="You may not use this bot")
            return
        is_direct = bool(event.content.get("is_direct"))
        await bridge.bot.join_room(event.room_id)
        await self.rooms.remember(
            event.room_id, is_direct=is_direct, dm_user=event.sender if is_direct else None
        )
        encryption = await self._room_encryption(event.room_id)
        if encryption:
            await self._encrypted_notice(event.room_id, event.sender, ctx)

    async def _room_encryption(self, room_id: str) -> bool:
        try:
            state = await self.bridge.bot.get_state_event(room_id, "m.room.encryption")
        except Exception:
            return False
        return bool(state)

    async def on_encrypted(self, event: MatrixEvent, ctx: EventContext) -> None:
        if self.bridge.is_ours(event.sender):
            return
        await self._encrypted_notice(event.room_id, event.sender, ctx)

    async def _encrypted_notice(self, room_id: str, user_id: str, ctx: EventContext) -> None:
        if self.bridge.encryption.ready:  # the bot reads and writes there (bridge/crypto)
            return
        if not await self.rooms.claim_encrypted_notice(room_id):
            return
        dm = await self.bridge.direct_chats.open_with(user_id)
        self.rooms.forget(dm)  # recorded by the service, not through this book
        await ctx.notice(room_id, ENCRYPTED_NOTICE.format(user=user_id))
        if self.bridge.encryption.unavailable:  # what the operator must change
            await ctx.notice(room_id, f"Why: {self.bridge.encryption.unavailable}.")
        prefix = self.bridge.config["bridge.command_prefix"]
        await ctx.notice(
            dm,
            f"Hello! I can't read the encrypted room {room_id}, so let's talk "
            f"here. Send {prefix}help to see what I can do.",
        )
