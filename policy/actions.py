"""The action names the bridge asks about. Plugins may use others (dotted, lower case);
rules select actions by exact name or glob (``call.*``)."""

from __future__ import annotations

CALL_PLACE = "call.place"
"""Start a voice/video call (``m.call.invite`` sent by the actor)."""
CALL_ANSWER = "call.answer"
"""Answer a call (``m.call.answer`` sent by the actor)."""
GROUP_CREATE = "group.create"
"""Create a group room (``user_may_create_room`` in Synapse)."""
ROOM_INVITE = "room.invite"
"""Invite someone to a room (``user_may_invite`` in Synapse)."""
ROOM_POST = "room.post"
"""Send a message to a room."""
DRIVE_SHARE = "drive.share"
"""Share a drive file or folder into a chat."""
DRIVE_INVITE = "drive.invite"
"""Invite someone to a shared drive folder."""

MVOIP_ACTIONS = frozenset({CALL_PLACE, CALL_ANSWER})
"""Mobile VoIP: the actions carrier rules and the regulation vetoes cover by default."""
BOT_COMMAND = "bot.command"
"""Run a command of the bot (``!drive ...``, ``!call ...``); the target is the command."""

KNOWN_ACTIONS: tuple[str, ...] = (
    CALL_PLACE,
    CALL_ANSWER,
    GROUP_CREATE,
    ROOM_INVITE,
    ROOM_POST,
    DRIVE_SHARE,
    DRIVE_INVITE,
    BOT_COMMAND,
)
"""Every action Anywhere itself asks about. Plugins may ask about others; rules name
those explicitly (and ``!policy explain`` then knows them too)."""
