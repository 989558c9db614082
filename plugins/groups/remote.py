"""What connectors report, relayed into the portal rooms: the network's messages,
edits, retractions, reactions, memberships and avatars, each once (the message map
knows what was relayed). A part of :class:`~plugins.groups.hub.Hub`, which extends
this class."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable

from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType

from . import convert
from .connector import FileData, Message, Portal, RemoteUser

#: Set (true) in the content of messages shown as a room's history when it was linked.
HISTORY_KEY = "org.anywhere.history"


def remote_txn_id(network: str, remote_id: str, what: str = "message") -> str:
    """The Matrix transaction ID of a network event: the same event, the same send."""
    seed = f"groups|{network}|{what}|{remote_id}"
    return "anywhere.groups." + hashlib.sha256(seed.encode()).hexdigest()[:32]


class RemoteEvents:
    """Network → Matrix, for :class:`~plugins.groups.hub.Hub` (whose attributes these
    methods use: the bridge, the ghosts, the portals, the connectors)."""

    async def _already(self, network: str, remote_id: str) -> bool:
        return bool(
            await self.bridge.db.fetchval(
                "SELECT 1 FROM groups_message WHERE network = $1 AND remote_id = $2",
                network,
                remote_id,
            )
        )

    async def event_for(self, network: str, remote_id: str) -> tuple[str, str] | None:
        row = await self.bridge.db.fetchrow(
            "SELECT room_id, event_id FROM groups_message WHERE network = $1 AND remote_id = $2",
            network,
            remote_id,
        )
        return (row["room_id"], row["event_id"]) if row else None

    async def remote_for(self, event_id: str) -> tuple[str, str] | None:
        row = await self.bridge.db.fetchrow(
            "SELECT network, remote_id FROM groups_message WHERE event_id = $1 "
            "ORDER BY origin LIMIT 1",
            event_id,
        )
        return (row["network"], row["remote_id"]) if row else None

    async def _map(
        self,
        network: str,
        remote_id: str,
        room_id: str,
        event_id: str,
        origin: str,
        sender: str,
    ) -> None:
        """Remember that ``remote_id`` is ``event_id``, written by ``sender`` (the remote
        person's ID for ``origin`` remote, the Matrix user ID for ``origin`` matrix)."""
        await self.bridge.db.execute(
            "INSERT INTO groups_message (network, remote_id, room_id, event_id, origin, sender) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (network, remote_id) DO NOTHING",
            network,
            remote_id,
            room_id,
            event_id,
            origin,
            sender,
        )

    async def _by_author(self, network: str, target: str, sender: RemoteUser, what: str) -> bool:
        """Whether the network's message ``target`` was written by ``sender``: only its
        author may correct or retract it (a Matrix person's message never is)."""
        row = await self.bridge.db.fetchrow(
            "SELECT origin, sender FROM groups_message WHERE network = $1 AND remote_id = $2",
            network,
            target,
        )
        if row is not None and row["origin"] == "remote" and row["sender"] == sender.id:
            return True
        self.log.warning(
            f"a {what} of someone else's message was ignored",
            network=network,
            target=target,
            by=sender.id,
        )
        return False

    async def written_by(self, event_id: str, user_id: str) -> bool:
        """Whether the mapped message ``event_id`` came from Matrix, from ``user_id``
        (messages mapped before authors were kept count as theirs)."""
        row = await self.bridge.db.fetchrow(
            "SELECT origin, sender FROM groups_message WHERE event_id = $1 ORDER BY origin LIMIT 1",
            event_id,
        )
        return row is not None and row["origin"] == "matrix" and row["sender"] in (None, user_id)

    async def remote_message(self, portal: Portal, sender: RemoteUser, message: Message) -> None:
        """A message from the network into the portal, once per ``message.id``; an ID
        that came from Matrix (our own echo) is ignored."""
        network = portal.network
        if await self._already(network, message.id):
            return
        self._cut(message)
        ghost = await self.ghosts.ensure(network, sender)
        await ghost.ensure_joined(portal.room_id)
        mxc = None
        if message.file is not None:
            mxc = await ghost.upload_media(
                message.file.data, message.file.mimetype, message.file.name
            )
        content = convert.message_to_content(message, mxc)
        if message.reply_to:
            target = await self.event_for(network, message.reply_to)
            if target:
                content["m.relates_to"] = {"m.in_reply_to": {"event_id": target[1]}}
        if message.extra.get("history"):
            content[HISTORY_KEY] = True  # said before the room was linked
        timestamp = message.extra.get("timestamp")  # when it was said, if not just now
        event_id = await ghost.send_message_event(
            portal.room_id,
            EventType.ROOM_MESSAGE,
            content,
            txn_id=remote_txn_id(network, message.id),
            **({"timestamp": int(timestamp)} if timestamp else {}),
        )
        await self._map(network, message.id, portal.room_id, str(event_id), "remote", sender.id)

    def _cut(self, message: Message) -> None:
        """Bodies longer than max_body_chars arrive shortened, saying so."""
        limit = self.settings["max_body_chars"]
        if len(message.text) > limit:
            message.text = (
                message.text[:limit] + f"… [shortened by the bridge: the message had "
                f"{len(message.text)} characters]"
            )
            message.html = None

    async def remote_membership(self, portal: Portal, user: RemoteUser, membership: str) -> None:
        """A person joined (``join``; also a new name) or left (``leave``) the remote chat:
        their ghost does the same in the portal room."""
        ghost = await self.ghosts.ensure(portal.network, user)
        if membership == "join":
            await ghost.ensure_joined(portal.room_id)
        elif membership == "leave":
            with contextlib.suppress(MatrixRequestError):
                await ghost.leave_room(portal.room_id)

    async def remote_edit(
        self, portal: Portal, sender: RemoteUser, target: str, message: Message
    ) -> None:
        network = portal.network
        if await self._already(network, message.id):
            return
        original = await self.event_for(network, target)
        if original is None or original[0] != portal.room_id:
            # an edit of something we never saw (or in an older chat): show it as new
            await self.remote_message(portal, sender, message)
            return
        if not await self._by_author(network, target, sender, "correction"):
            return
        self._cut(message)
        ghost = await self.ghosts.ensure(network, sender)
        new = convert.message_to_content(message)
        content = {
            **new,
            "body": f"* {new['body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": original[1]},
        }
        event_id = await ghost.send_message_event(
            portal.room_id,
            EventType.ROOM_MESSAGE,
            content,
            txn_id=remote_txn_id(network, message.id, "edit"),
        )
        await self._map(network, message.id, portal.room_id, str(event_id), "remote", sender.id)

    async def remote_retraction(
        self, portal: Portal, sender: RemoteUser, target: str, retraction_id: str
    ) -> None:
        network = portal.network
        if await self._already(network, retraction_id):
            return
        original = await self.event_for(network, target)
        if original is None or not await self._by_author(network, target, sender, "retraction"):
            return
        ghost = await self.ghosts.ensure(network, sender)
        try:
            txn_id = remote_txn_id(network, retraction_id, "redact")
            url = Path.v3.rooms[portal.room_id].redact[original[1]][txn_id]
            event_id = (await ghost.api.request(Method.PUT, url, content={}))["event_id"]
        except MatrixRequestError as exc:
            self.log.warning("could not redact", event_id=original[1], error=str(exc))
            return
        await self._map(network, retraction_id, portal.room_id, str(event_id), "remote", sender.id)

    async def remote_avatar(
        self,
        portal: Portal,
        user: RemoteUser,
        avatar_hash: str,
        fetch: Callable[[], Awaitable[FileData | None]],
    ) -> None:
        """The person's avatar is the one the network calls ``avatar_hash``: when it is
        new, ``fetch()`` gets the picture and the ghost shows it (an unchanged hash is
        neither fetched nor uploaded again)."""
        try:
            await self.ghosts.set_avatar(portal.network, user, avatar_hash, fetch)
        except MatrixRequestError as exc:
            self.log.warning("could not set a ghost's avatar", user=user.id, error=str(exc))

    async def _reactions(self, network: str, target: str, who: str) -> dict[str, tuple[str, str]]:
        """``key → (map ID, event ID)`` of one person's reactions to ``target``."""
        prefix = convert.reaction_prefix(target, who)
        rows = await self.bridge.db.fetch(
            "SELECT remote_id, event_id FROM groups_message WHERE network = $1 "
            "AND substr(remote_id, 1, $2) = $3",
            network,
            len(prefix),
            prefix,
        )
        return {
            json.loads(row["remote_id"][len(prefix) :]): (row["remote_id"], row["event_id"])
            for row in rows
        }

    async def remote_reactions(
        self, portal: Portal, sender: RemoteUser, target: str, keys: list[str], update_id: str
    ) -> None:
        """``sender``'s reactions to the network's message ``target`` are now ``keys``
        (``update_id``: the network's ID of this update): the ghost adds the new ones as
        ``m.reaction`` and redacts the ones taken back."""
        network = portal.network
        original = await self.event_for(network, target)
        if original is None:
            return
        who = f"r:{sender.id}"
        have = await self._reactions(network, target, who)
        ghost = await self.ghosts.ensure(network, sender)
        await ghost.ensure_joined(portal.room_id)
        for key in dict.fromkeys(k for k in keys if isinstance(k, str) and k):
            if key in have:
                continue
            map_id = convert.reaction_id(target, who, key)
            content = {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": original[1], "key": key}
            }
            event_id = await ghost.send_message_event(
                portal.room_id,
                EventType.REACTION,
                content,
                txn_id=remote_txn_id(network, f"{map_id}|{update_id}", "reaction"),
            )
            await self._map(network, map_id, portal.room_id, str(event_id), "remote", sender.id)
        for key, (map_id, event_id) in have.items():
            if key in keys:
                continue
            with contextlib.suppress(MatrixRequestError):
                await ghost.redact(portal.room_id, event_id)
            await self.bridge.db.execute(
                "DELETE FROM groups_message WHERE network = $1 AND remote_id = $2",
                network,
                map_id,
            )

    async def fetch_url(self, url: str, allowed_prefixes: list[str]) -> FileData | None:
        """Download a file a network message links to, if it is under one of
        ``allowed_prefixes`` (size-capped; see :mod:`plugins.groups.links`), for the media
        repository; None when it may not or cannot be fetched."""
        return await self.links.fetch(url, allowed_prefixes)
