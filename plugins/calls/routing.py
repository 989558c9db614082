"""Who of ours answers an incoming call, and whether the caller may make it.

The call targets are the bot (the echo test, or the mode ``bot_modes`` chooses), the
memo user and one conference user per room. A room's members are always read as one of
ours who is in that room: the bot is not in a direct chat with the memo or a conference
user, and asking as someone who is not in a room must never make them join it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from .state import Refusal, Route

if TYPE_CHECKING:
    from anywhere.bridge.api import Host


class BotModes:
    """Which mode answers a call to the bot (``plugins.settings.calls.bot_modes``): the
    first rule whose ``room`` (a room ID) and ``caller`` (a user ID, ``*`` matching any
    characters) match the call, a rule without one matching every room or caller;
    ``default`` when none does. The rules' shape and names are checked by the settings."""

    def __init__(self, rules: Sequence[Mapping[str, Any]] = (), default: str = "echo") -> None:
        self.rules = [(r.get("room"), r.get("caller"), r["mode"]) for r in rules]
        self.default = default

    def choose(self, room_id: str, caller: str) -> str:
        for room, pattern, mode in self.rules:
            if room not in (None, room_id):
                continue
            if pattern is None or fnmatchcase(caller, pattern):
                return mode
        return self.default


class CallRouter:
    """The call targets, the rooms the memo and conference users are in (the
    ``calls_room_user`` table), and the routing and admission of invites."""

    def __init__(self, bridge: Host, bot_modes: BotModes | None = None) -> None:
        self.bridge = bridge
        self.bot_modes = bot_modes or BotModes()
        self.bot = bridge.info.bot_user_id
        self.memo_user = ""  # calling it in a room records a memo for that room
        self.conference_users: dict[str, str] = {}  # conference user -> its room

    def is_call_target(self, user_id: str) -> bool:
        return user_id in (self.bot, self.memo_user) or user_id in self.conference_users

    async def route(self, room_id: str, invitee: str | None, caller: str) -> Route | Refusal | None:
        """Who of ours answers ``caller``'s invite in ``room_id`` addressed to ``invitee``
        (None: not for us), or why that one refuses it.

        Without an invitee (version 0, and Element's 1:1 calls: a two-person room has
        nobody to name) the call is for one of ours when it is the only other member.
        With one, the invitee must be joined in the room: nobody of ours answers from a
        room it is not in."""
        if invitee is not None and not self.is_call_target(invitee):
            return None
        seen = await self.members(room_id, prefer=invitee)
        if seen is None:
            return None
        members = seen[1]
        if invitee is None:
            ours = [m for m in members if self.bridge.is_ours(m)]
            if len(members) != 2 or len(ours) != 1 or not self.is_call_target(ours[0]):
                return None
            invitee = ours[0]
        elif invitee not in members:
            return None
        route = self._target(invitee, room_id, caller)
        # a call in the conference's own room: the members just read tell membership
        return await self._admit(route, caller, members if route.key == room_id else None)

    def _target(self, callee: str, room_id: str, caller: str) -> Route:
        if callee == self.memo_user:
            return Route(callee, "memo", room_id)
        if callee in self.conference_users:
            return Route(callee, "conference", self.conference_users[callee])
        return Route(callee, self.bot_modes.choose(room_id, caller))

    async def _admit(
        self, route: Route, caller: str, members: set[str] | None = None
    ) -> Route | Refusal:
        """Whether ``caller`` may make this call at all: the bridge's permissions for
        every target; for a conference, membership of its room (``members`` when they
        were read already), read when the call arrives (a member who leaves is hung up:
        ``CallBook.member_left``)."""
        if not self.may_use(caller):
            return Refusal(route.callee, "you may not use this bridge's calls")
        if route.mode != "conference":
            return route
        if members is not None:
            member = caller in members
        else:
            member = await self.is_member(route.key, caller)
        if not member:
            return Refusal(
                route.callee,
                f"only members of the conference's room ({route.key}) may join its "
                "conference; ask to be invited to that room",
            )
        return route

    def may_use(self, user_id: str) -> bool:
        return self.bridge.permissions.at_least(user_id, "user")

    async def is_member(self, conference_room: str, user_id: str) -> bool:
        """True when ``user_id`` is joined in ``conference_room``, as its conference
        user sees the room."""
        seen = await self.members(conference_room, prefer=self.conference_user(conference_room))
        return seen is not None and user_id in seen[1]

    def conference_user(self, room_id: str) -> str | None:
        return next((u for u, room in self.conference_users.items() if room == room_id), None)

    async def members(self, room_id: str, prefer: str | None = None) -> tuple[str, set[str]] | None:
        """(one of ours joined in ``room_id``, the room's joined members as it sees
        them), or None when none of ours is in the room. Asked as ``prefer`` first, then
        as the users of ours known to be in the room, the bot and the memo user."""
        if prefer:
            seen = await self._members_as(prefer, room_id)
            if seen is not None:
                return seen
        known = await self.bridge.db.fetch(
            "SELECT user_id FROM calls_room_user WHERE room_id = $1", room_id
        )
        candidates = [*(row["user_id"] for row in known), self.bot, self.memo_user]
        for user in dict.fromkeys(u for u in candidates if u and u != prefer):
            seen = await self._members_as(user, room_id)
            if seen is not None:
                return seen
        return None

    async def _members_as(self, user: str, room_id: str) -> tuple[str, set[str]] | None:
        intent = self.bridge.bot if user == self.bot else self.bridge.intent(user)
        try:
            # never ensure_joined: asking must not make anyone of ours join the room
            joined = await intent.get_joined_members(room_id, ensure_joined=False)
        except Exception:
            return None
        members = {str(m) for m in joined}
        return (user, members) if user in members else None

    async def track(self, room_id: str, user: str, membership: object) -> None:
        """Follow the memo and conference users' own joins and leaves (see :meth:`members`)."""
        if user != self.memo_user and user not in self.conference_users:
            return
        if membership == "join":
            await self.joined(room_id, user)
        elif membership in ("leave", "ban"):
            await self.bridge.db.execute(
                "DELETE FROM calls_room_user WHERE room_id = $1 AND user_id = $2", room_id, user
            )

    async def learn_rooms(self) -> None:
        """Record the rooms the memo and conference users are in, as the homeserver
        knows them: direct chats joined before this table existed (or while the bridge
        was down) are then found too. Run at start-up, in the background."""
        for user in (self.memo_user, *self.conference_users):
            try:
                rooms = await self.bridge.intent(user).get_joined_rooms()
            except Exception:
                continue  # not registered yet: it is in no room
            for room_id in rooms:
                await self.joined(str(room_id), user)

    async def joined(self, room_id: str, user: str) -> None:
        await self.bridge.db.execute(
            "INSERT INTO calls_room_user (room_id, user_id) VALUES ($1, $2) "
            "ON CONFLICT (room_id, user_id) DO NOTHING",
            room_id,
            user,
        )
