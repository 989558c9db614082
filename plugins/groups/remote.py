"""What connectors report, relayed into the portal rooms: the network's messages,
edits, retractions, reactions, memberships and avatars, each once (the message map
knows what was relayed). The hub hands connectors' ``remote_*`` calls to this object."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType

from . import convert
from .connector import FileData, Message, Portal, RemoteUser
from .ghosts import Ghosts
from .links import LinkFetcher
from .store import PortalStore

#: Set (true) in the content of messages shown as a room's history when it was linked.
HISTORY_KEY = "org.anywhere.history"


def remote_txn_id(network: str, remote_id: str, what: str = "message") -> str:
    """The Matrix transaction ID of a network event: the same event, the same send."""
    seed = f"groups|{network}|{what}|{remote_id}"
    return "anywhere.groups." + hashlib.sha256(seed.encode()).hexdigest()[:32]


class RemoteEvents:
    """Network → Matrix: what connectors report, posted by the ghosts and remembered in
    the message map of ``store``."""

    def __init__(
        self,
        store: PortalStore,
        ghosts: Ghosts,
        links: LinkFetcher,
        settings: dict[str, Any],
        log: Any,
    ) -> None:
        self.store = store
        self.ghosts = ghosts
        self.links = links
        self.settings = settings
        self.log = log

    async def _by_author(self, network: str, target: str, sender: RemoteUser, what: str) -> bool:
        """Whether the network's message ``target`` was written by ``sender``: only its
        author may correct or retract it (a Matrix person's message never is)."""
        if await self.store.by_remote_author(network, target, sender.id):
            return True
        self.log.warning(
            f"a {what} of someone else's message was ignored",
            network=network,
            target=target,
            by=sender.id,
        )
        return False

    async def remote_message(self, portal: Portal, sender: RemoteUser, message: Message) -> None:
        """A message from the network into the portal, once per ``message.id``; an ID
        that came from Matrix (our own echo) is ignored."""
        network = portal.network
        if await self.store.known(network, message.id):
            return
        self._cut(message)
        ghost = await self.ghosts.ensure(network, sender)
        await ghost.ensure_joined(portal.room_id)
        uploaded = None
        if message.file is not None:
            uploaded = await self.ghosts.upload_file(ghost, portal.room_id, message.file)
        content = convert.message_to_content(message, uploaded)
        if message.reply_to:
            target = await self.store.event_for(network, message.reply_to)
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
        await self.store.map(
            network, message.id, portal.room_id, str(event_id), "remote", sender.id
        )

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
        if await self.store.known(network, message.id):
            return
        original = await self.store.event_for(network, target)
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
        await self.store.map(
            network, message.id, portal.room_id, str(event_id), "remote", sender.id
        )

    async def remote_retraction(
        self, portal: Portal, sender: RemoteUser, target: str, retraction_id: str
    ) -> None:
        network = portal.network
        if await self.store.known(network, retraction_id):
            return
        original = await self.store.event_for(network, target)
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
        await self.store.map(
            network, retraction_id, portal.room_id, str(event_id), "remote", sender.id
        )

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

    async def remote_reactions(
        self, portal: Portal, sender: RemoteUser, target: str, keys: list[str], update_id: str
    ) -> None:
        """``sender``'s reactions to the network's message ``target`` are now ``keys``
        (``update_id``: the network's ID of this update): the ghost adds the new ones as
        ``m.reaction`` and redacts the ones taken back."""
        network = portal.network
        original = await self.store.event_for(network, target)
        if original is None:
            return
        who = f"r:{sender.id}"
        have = await self.store.reactions(network, target, who)
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
            await self.store.map(
                network, map_id, portal.room_id, str(event_id), "remote", sender.id
            )
        for key, (map_id, event_id) in have.items():
            if key in keys:
                continue
            with contextlib.suppress(MatrixRequestError):
                await ghost.redact(portal.room_id, event_id)
            await self.store.unmap(network, map_id)

    async def fetch_url(self, url: str, allowed_prefixes: list[str]) -> FileData | None:
        """Download a file a network message links to, if it is under one of
        ``allowed_prefixes`` (size-capped; see :mod:`anywhere.plugins.groups.links`), for the media
        repository; None when it may not or cannot be fetched."""
        return await self.links.fetch(url, allowed_prefixes)
