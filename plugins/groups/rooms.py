"""Group rooms: a room owned by the bot, the creator as admin, exactly the people needed."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, PowerLevelStateEventContent, RoomCreatePreset

from anywhere.bridge import CommandError

if TYPE_CHECKING:
    from anywhere.bridge.runtime import Bridge

USER_ID = re.compile(r"@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?")
ADMIN_LEVEL = 100
MANAGE_LEVEL = 50


@dataclass
class Invited:
    room_id: str
    invited: list[str]
    failed: dict[str, str]
    existing: bool = False


def check_user_ids(user_ids: list[str]) -> list[str]:
    """The IDs in order without repeats; a CommandError names the first malformed one."""
    seen: list[str] = []
    for user_id in user_ids:
        if not USER_ID.fullmatch(user_id):
            raise CommandError(
                f"{user_id!r} is not a Matrix user ID; write it as @name:server "
                "(lowercase), e.g. @alice:example.org"
            )
        if user_id not in seen:
            seen.append(user_id)
    return seen


class GroupRooms:
    def __init__(self, bridge: Bridge, settings: dict) -> None:
        self.bridge = bridge
        self.settings = settings

    async def create(
        self, creator: str, name: str, people: list[str], event_id: str, topic: str | None = None
    ) -> Invited:
        """Create the room (or find the one this same command created before a crash)."""
        existing = await self.bridge.db.fetchval(
            "SELECT room_id FROM groups_room WHERE event_id = $1", event_id
        )
        if existing:
            return Invited(existing, [], {}, existing=True)
        bot = self.bridge.bot
        room_id = await bot.create_room(
            preset=RoomCreatePreset.PRIVATE,
            name=name,
            topic=topic or self.settings["default_topic"].format(creator=creator),
            # the bot creates the room: it is the room's creator (and above every level)
            power_level_override={"users": {creator: ADMIN_LEVEL}},
        )
        await self.bridge.db.execute(
            "INSERT INTO groups_room (room_id, name, creator, created_at, event_id) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) DO NOTHING",
            room_id,
            name,
            creator,
            int(time.time() * 1000),
            event_id,
        )
        result = await self.invite(room_id, [creator, *[p for p in people if p != creator]])
        result.invited = [p for p in result.invited if p != creator]
        return result

    async def invite(self, room_id: str, people: list[str]) -> Invited:
        invited, failed = [], {}
        for user_id in people:
            try:
                await self.bridge.bot.invite_user(room_id, user_id)
                invited.append(user_id)
            except MatrixRequestError as exc:
                if "already in the room" in (exc.message or ""):
                    failed[user_id] = "already in the group"
                else:
                    failed[user_id] = exc.message or exc.errcode
        return Invited(room_id, invited, failed)

    async def remove(self, room_id: str, people: list[str], by: str) -> Invited:
        removed, failed = [], {}
        for user_id in people:
            if user_id == self.bridge.bot.mxid:
                failed[user_id] = "the bot runs the group and cannot be removed"
                continue
            try:
                await self.bridge.bot.kick_user(room_id, user_id, reason=f"removed by {by}")
                removed.append(user_id)
            except MatrixRequestError as exc:
                failed[user_id] = exc.message or exc.errcode
        return Invited(room_id, removed, failed)

    async def require_manager(
        self, room_id: str, user_id: str, action: str, targets: list[str] | None = None
    ) -> None:
        """Refuse unless ``user_id`` may have the bot do ``action`` in ``room_id``.

        ``action`` is ``invite``, ``kick`` or ``link`` (link/unlink). The sender must be
        joined, have at least the room's level for the action (for ``link``: the level to
        change room settings, ``state_default``, and at least 50), and, for ``kick``, outrank
        each of ``targets`` — the bot acts with its own power, so it must never do for
        someone what the room would not let them do themselves.
        """
        try:
            state = await self.bridge.bot.get_state(room_id)
        except MatrixRequestError as exc:
            raise CommandError(
                f"I am not in the room {room_id} (or it does not exist): invite me, or "
                "check the room ID"
            ) from exc
        levels, create, membership = PowerLevelStateEventContent(), None, {}
        for event in state:
            if event.type == EventType.ROOM_POWER_LEVELS:
                levels = event.content
            elif event.type == EventType.ROOM_CREATE:
                create = event
            elif event.type == EventType.ROOM_MEMBER:
                membership[event.state_key] = str(event.content.membership.value)
        if membership.get(user_id) != "join":
            raise CommandError(
                f"you are not a member of {room_id}: only members of a group may manage it; "
                "ask one of its admins to invite you back"
            )

        def level(who: str) -> int:
            return levels.get_user_level(who, create)

        needed = {
            "invite": levels.invite,
            "kick": levels.kick,
            "link": max(levels.state_default, MANAGE_LEVEL),
        }[action]
        what = {"invite": "invite people", "kick": "remove people", "link": "link or unlink it"}
        if level(user_id) < needed:
            raise CommandError(
                f"only the group's admins and moderators may {what[action]}: it needs power "
                f"level {needed} in this room and you have {level(user_id)}; ask one of them"
            )
        for target in targets or []:
            if target != self.bridge.bot.mxid and level(target) >= level(user_id):
                raise CommandError(
                    f"you cannot remove {target}: their power level ({level(target)}) is not "
                    f"below yours ({level(user_id)}); ask someone above them"
                )
        bot_level = level(self.bridge.bot.mxid)
        if not await self._bot_created(room_id) and bot_level < max(needed, MANAGE_LEVEL):
            raise CommandError(
                f"I need power level {max(needed, MANAGE_LEVEL)} or more in this room to "
                f"{what[action]}; raise mine in the room settings"
            )

    async def _bot_created(self, room_id: str) -> bool:
        return bool(
            await self.bridge.db.fetchval("SELECT 1 FROM groups_room WHERE room_id = $1", room_id)
        )

    async def groups_of(self, user_id: str) -> list[tuple[str, str, str]]:
        """(room_id, name, membership) of the groups ``user_id`` is in or invited to."""
        rows = await self.bridge.db.fetch(
            "SELECT room_id, name FROM groups_room ORDER BY created_at"
        )
        found = []
        for row in rows:
            try:
                member = await self.bridge.bot.get_state_event(
                    row["room_id"], EventType.ROOM_MEMBER, user_id
                )
            except MatrixRequestError:
                continue
            membership = str(member.membership.value if member.membership else "")
            if membership in ("join", "invite"):
                found.append((row["room_id"], row["name"], membership))
        return found
