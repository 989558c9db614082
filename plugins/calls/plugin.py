"""The Calls plugin's hooks: config, ghost namespace, schema, commands and events."""

from __future__ import annotations

import argparse
import hashlib
from typing import TYPE_CHECKING, Any

from anywhere.bridge import (
    Command,
    CommandError,
    EventContext,
    MatrixEvent,
    Migrations,
    Namespaces,
    argument,
    command,
    hookimpl,
)
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.namespaces import user_regex

from .manager import RTC_MEMBER_TYPES, CallManager
from .modes import MODES, CallMode
from .settings import SECTION
from .signalling import CALL_EVENT_TYPES

if TYPE_CHECKING:
    from anywhere.bridge.api import Extensions, Host
    from anywhere.bridge.config import Config


async def v1_conferences(conn: Any, scheme: Any) -> None:
    """conference users, one per room"""
    await conn.execute(
        """CREATE TABLE calls_conference (
            room_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL UNIQUE
        )"""
    )


async def v2_rooms_and_rtc_notices(conn: Any, scheme: Any) -> None:
    """the rooms the memo and conference users are in; rooms told about MatrixRTC"""
    await conn.execute(
        """CREATE TABLE calls_room_user (
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )"""
    )
    await conn.execute("CREATE TABLE calls_rtc_notice (room_id TEXT PRIMARY KEY)")
    # the conference users are in their rooms already
    await conn.execute("INSERT INTO calls_room_user SELECT room_id, user_id FROM calls_conference")


def collect_modes(extensions: Extensions) -> dict[str, type[CallMode]]:
    """The built-in modes plus those other plugins give through ``anywhere_calls_modes``
    (and, for one more release, the deprecated ``anywhere_call_modes``), from
    ``bridge.extensions`` (or the plugin manager, which collects the same way)."""
    modes = dict(MODES)
    taken = dict.fromkeys(MODES, "calls")
    for hook in ("anywhere_calls_modes", "anywhere_call_modes"):
        for mode_name, (name, mode) in extensions.collect(hook, "call mode", taken).items():
            if not (isinstance(mode, type) and issubclass(mode, CallMode)):
                raise PluginLoadError(
                    f"plugin {name!r}: call mode {mode_name!r} must be a subclass of "
                    f"anywhere.plugins.calls.modes.CallMode, found {mode!r}"
                )
            modes[mode_name], taken[mode_name] = mode, name
    return modes


def ghost_prefix(appservice_ghost_prefix: str) -> str:
    """The calls plugin's users' prefix, inside the bridge's (``appservice.ghost_prefix``)."""
    return f"{appservice_ghost_prefix}calls_"


class CallsPlugin:
    def __init__(self) -> None:
        self.bridge: Host | None = None
        self.manager: CallManager | None = None

    @hookimpl
    def anywhere_hookspecs(self):
        from . import hookspecs

        return hookspecs

    @hookimpl
    def anywhere_config_section(self):
        return SECTION

    @hookimpl
    def anywhere_namespaces(self, config: Config) -> Namespaces:
        prefix = ghost_prefix(config["appservice.ghost_prefix"])
        return Namespaces.of(users=[user_regex(prefix, config["homeserver.domain"])])

    @hookimpl
    def anywhere_migrations(self) -> Migrations:
        return Migrations("calls", [v1_conferences, v2_rooms_and_rtc_notices])

    @hookimpl
    async def anywhere_startup(self, bridge: Host) -> None:
        self.bridge = bridge
        modes = collect_modes(bridge.extensions)
        self.manager = CallManager(bridge, bridge.settings("calls"), modes)
        info = bridge.info
        self.manager.router.memo_user = (
            f"@{ghost_prefix(info.ghost_prefix)}memo:{info.homeserver_domain}"
        )
        for row in await bridge.db.fetch("SELECT room_id, user_id FROM calls_conference"):
            self.manager.router.conference_users[row["user_id"]] = row["room_id"]
        await self.manager.start()

    @hookimpl
    async def anywhere_shutdown(self, bridge: Host) -> None:
        if self.manager is not None:
            await self.manager.stop()

    @hookimpl
    def anywhere_event_handlers(self) -> dict[str, Any]:
        handlers: dict[str, Any] = dict.fromkeys(CALL_EVENT_TYPES, self.on_call_event)
        handlers["m.room.member"] = self.on_member
        for event_type in RTC_MEMBER_TYPES:
            handlers[event_type] = self.on_rtc_member
        return handlers

    @hookimpl
    def anywhere_commands(self) -> list[Command]:
        return [self.call_command()]

    # ----- events -----
    async def on_call_event(self, event: MatrixEvent, ctx: EventContext) -> None:
        await self.manager.on_call_event(event, ctx)

    async def on_rtc_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        await self.manager.on_rtc_member(event, ctx)

    async def on_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        user = event.state_key or ""
        router = self.manager.router
        ghosts = (router.memo_user, *router.conference_users)
        if event.content.get("membership") == "invite" and user in ghosts:
            await self.on_ghost_invite(event, user)
            return
        await self.manager.on_member(event, ctx)

    async def on_ghost_invite(self, event: MatrixEvent, user: str) -> None:
        """The memo user joins any room a permitted person invites it to; a conference
        user joins the direct chats its room's members open with it, to call it from
        clients that only call in two-person rooms (nobody else: they may not listen)."""
        router = self.manager.router
        intent = self.bridge.intent(user)
        await intent.ensure_registered()
        refusal = None
        if not router.may_use(event.sender):
            refusal = "You may not use this bridge"
        elif user in router.conference_users:
            room = router.conference_users[user]
            if not await router.is_member(room, event.sender):
                refusal = f"Only members of {room} may call its conference"
        if refusal is not None:
            await intent.leave_room(event.room_id, reason=refusal)
            return
        await intent.join_room(event.room_id)
        await router.joined(event.room_id, user)
        if user == router.memo_user:
            await intent.set_displayname("Voice memo")

    # ----- commands -----
    def call_command(self) -> Command:
        @command("call", help="Voice calls: a voice memo, or a conference for this room")
        @argument(
            "what",
            nargs="?",
            choices=["memo", "conference"],
            metavar="memo|conference",
            help="memo: the bot calls you and records a voice message; "
            "conference: an audio conference for this room's members",
        )
        @argument("--seconds", type=int, help="memo: longest recording, in seconds")
        async def call(ctx: EventContext, args: argparse.Namespace) -> None:
            if args.what is None:
                raise CommandError(
                    "choose one: `!call memo` (the bot calls you and records a voice "
                    "message) or `!call conference` (an audio conference for this "
                    "room's members); to test your line, call the bot"
                )
            if args.what == "memo":
                await self.start_memo(ctx, args.seconds)
            else:
                await self.start_conference(ctx)

        return call

    async def start_memo(self, ctx: EventContext, seconds: int | None) -> None:
        limit = self.bridge.settings("calls")["memo_max_seconds"]
        if seconds is not None and not 1 <= seconds <= limit:
            raise CommandError(f"--seconds must be between 1 and {limit}")
        person, room = ctx.event.sender, ctx.event.room_id
        decision = await self.bridge.authorize(
            person, "call.place", person, {"room_id": room, "mode": "memo"}
        )
        if not decision.allowed:
            await ctx.reply(f"I can't call you: {decision.reason}")
            return
        book = self.manager.book
        if len(book.active) >= book.max_calls:
            raise CommandError("all lines are busy; try again in a few minutes")
        if book.calls_of(person) >= book.max_per_person:
            raise CommandError(
                f"you are in {book.calls_of(person)} calls already (the most one person may "
                "be in at once); hang up one first"
            )
        await ctx.reply(
            f"Calling you now: speak after the tone (up to {seconds or limit} s), then hang "
            "up. Your voice memo is posted here. (You can also invite "
            f"{self.manager.router.memo_user} to a room and call it.)"
        )
        await self.manager.place(ctx, room, person, "memo", {"seconds": seconds or limit})

    async def start_conference(self, ctx: EventContext) -> None:
        room = ctx.event.room_id
        user = await self.bridge.db.fetchval(
            "SELECT user_id FROM calls_conference WHERE room_id = $1", room
        )
        if user is None:
            digest = hashlib.sha256(room.encode()).hexdigest()[:12]
            info = self.bridge.info
            prefix = ghost_prefix(info.ghost_prefix)
            user = f"@{prefix}conf_{digest}:{info.homeserver_domain}"
            intent = self.bridge.intent(user)
            await intent.ensure_registered()
            await intent.set_displayname("Conference call")
            await self.bridge.bot.invite_user(room, user)
            await intent.join_room(room)
            await self.bridge.db.execute(
                "INSERT INTO calls_conference (room_id, user_id) VALUES ($1, $2) "
                "ON CONFLICT (room_id) DO NOTHING",
                room,
                user,
            )
            await self.manager.router.joined(room, user)
        self.manager.router.conference_users[user] = room
        await ctx.reply(
            f"Conference ready: call {user} to join. Everyone who calls it hears everyone "
            "else; only this room's members may join. If your client only calls in "
            f"two-person rooms (Element), open a direct chat with {user} and call there."
        )
