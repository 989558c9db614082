"""The runtime side of bridging, composed of parts: the portals and the message map
(``store.py``), the network's events reported through ``remote_*`` (``remote.py``, which
the hub hands them to), Matrix events reaching connectors through the durable outbox
(``outbox.py``), in order, once, and what a network shows of Matrix people (names,
avatars: ``people.py``). The hub links groups, opens 1:1 portals and routes events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomCreatePreset

from anywhere.bridge import CommandError, EventContext, MatrixEvent
from anywhere.bridge.commands import LEVELS, level_for

from .connector import (
    DIRECT,
    GROUP,
    Connector,
    FileData,
    GroupLinking,
    MatrixSender,
    MembershipHandling,
    Message,
    NetworkUnavailable,
    Portal,
    ReadMarkerHandling,
    Refused,
    RemoteUser,
    TypingHandling,
    capabilities,
)
from .ghosts import Ghosts
from .limits import RemoteLimits
from .links import LinkFetcher
from .outbox import Outbox
from .people import MatrixPeople
from .remote import RemoteEvents
from .store import PortalStore

if TYPE_CHECKING:
    from anywhere.bridge.runtime import Bridge

GHOST_ROOM_VERSION = "11"  # the newest where the creator's power is set by power levels
TYPING_MS = 30_000  # a ghost stops "typing" by itself after this, if no update comes


class Hub:
    def __init__(self, bridge: Bridge, settings: dict[str, Any]) -> None:
        self.bridge = bridge
        self.settings = settings
        self.log = bridge.log.bind(plugin="groups")
        self.limits = RemoteLimits(settings["limits"])
        self.links = LinkFetcher(
            settings["max_file_bytes"], settings["fetch_private_addresses"], self.log
        )
        self.ghosts = Ghosts(bridge, self.limits)
        self.connectors: dict[str, Connector] = {}
        self.store = PortalStore(bridge.db)
        self._matrix_people: set[str] = set()  # local people known to exist
        self.people = MatrixPeople(self.room_intent, bridge.bot, self.log)
        self.remote = RemoteEvents(self.store, self.ghosts, self.links, settings, self.log)
        self.outbox = Outbox(
            bridge, self.store, self.connectors, self.people, self.room_intent, self.log
        )
        self._workers: list[asyncio.Task] = []
        self._dm_lock = asyncio.Lock()

    # ----- life cycle -----
    async def start(self, connectors: list[Connector]) -> None:
        await self.store.load()
        for connector in connectors:
            self.connectors[connector.network] = connector
            settings = (
                self.settings["xmpp"]
                if connector.network == "xmpp"
                else self.settings["networks"].get(connector.network, {})
            )
            await connector.start(self, settings)
            self.log.info(
                "network connector started",
                network=connector.network,
                capabilities=sorted(capabilities(connector)),
            )
            for portal in self.store.portals(connector.network):
                await connector.connect(portal)
            self._workers.append(asyncio.create_task(self.outbox.run(connector.network)))

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connector in self.connectors.values():
            await connector.stop()
        await self.links.close()

    def network_up(self, network: str) -> None:
        """Connectors call this after (re)connecting: queued messages go out now."""
        self.outbox.wake(network)

    def supports(self, network: str, capability: str) -> bool:
        connector = self.connectors.get(network)
        return connector is not None and capability in capabilities(connector)

    def linkable_networks(self) -> list[str]:
        return sorted(n for n, c in self.connectors.items() if isinstance(c, GroupLinking))

    # ----- portals -----
    async def portal_for_room(self, room_id: str) -> Portal | None:
        return self.store.for_room(room_id)

    def portal_for_remote(
        self, network: str, remote_id: str, matrix_user: str | None = None
    ) -> Portal | None:
        return self.store.for_remote(network, remote_id, matrix_user)

    async def link(self, room_id: str, network: str, address: str, by: str) -> str:
        connector = self.connectors.get(network)
        if not isinstance(connector, GroupLinking):
            raise CommandError(
                f"no connector links group chats on {network!r}; linkable networks: "
                f"{', '.join(self.linkable_networks()) or 'none'}"
            )
        portal = self.store.for_room(room_id)
        if portal is not None:
            raise CommandError(
                f"this group is already bridged to {portal.network}:{portal.remote_id}; "
                "!group unlink it first"
            )
        try:
            remote_id, name = await connector.resolve_group(address)
        except Refused as exc:
            raise CommandError(f"cannot link {network}:{address}: {exc}") from exc
        existing = self.portal_for_remote(network, remote_id)
        if existing:
            raise CommandError(
                f"{network}:{remote_id} is already bridged to {existing.room_id}; unlink it there"
            )
        portal = Portal(network, remote_id, room_id, GROUP)
        try:
            await connector.connect(portal)
        except (Refused, NetworkUnavailable) as exc:
            if isinstance(connector, GroupLinking):
                await connector.disconnect(portal)
            raise CommandError(f"cannot link {network}:{remote_id}: {exc}") from exc
        await self.store.save(portal)
        self.log.info("group linked", room_id=room_id, network=network, remote_id=remote_id, by=by)
        return (
            f"Linked this group with {network}:{remote_id} ({name}). Messages now go both "
            "ways; !group unlink stops it."
        )

    async def unlink(self, room_id: str) -> str:
        portal = self.store.for_room(room_id)
        if portal is None or portal.kind != GROUP:
            raise CommandError("this group is not bridged to another network")
        connector = self.connectors.get(portal.network)
        if isinstance(connector, GroupLinking):
            await connector.disconnect(portal)
        await self.store.delete(portal)
        return f"Unlinked from {portal.network}:{portal.remote_id}."

    def may_use_bridge(self, user_id: str) -> bool:
        """Whether ``bridge.permissions`` lets ``user_id`` use the bridge (level ``user``+)."""
        return level_for(user_id, self.bridge.config["bridge.permissions"]) >= LEVELS["user"]

    async def _check_matrix_person(self, user_id: str) -> None:
        """Refuse unless ``user_id`` is a local person who exists and may use the bridge."""
        if not self.may_use_bridge(user_id) or self.bridge.is_ours(user_id):
            raise Refused(f"{user_id} cannot be reached through this bridge")
        if user_id in self._matrix_people:
            return
        try:
            await self.bridge.bot.get_profile(user_id)
        except MatrixRequestError as exc:
            raise Refused(f"there is no Matrix user {user_id}") from exc
        self._matrix_people.add(user_id)

    async def direct_portal(self, network: str, remote: RemoteUser, matrix_user: str) -> Portal:
        """The 1:1 portal between ``remote`` and ``matrix_user``, created (by the ghost,
        inviting the person) on first use. Raises :class:`Refused` (say why to the
        sender) for a Matrix person who does not exist or may not use the bridge, and
        when ``remote`` has reached its limits (``settings.limits``)."""
        async with self._dm_lock:
            portal = self.portal_for_remote(network, remote.id, matrix_user)
            if portal:
                return portal
            await self._check_matrix_person(matrix_user)
            counts = self.store.direct_counts(network, remote.id)
            self.limits.check("direct_chats", remote.id, counts)
            ghost = await self.ghosts.ensure(network, remote)
            room_id = await ghost.create_room(
                preset=RoomCreatePreset.TRUSTED_PRIVATE,
                is_direct=True,
                invitees=[matrix_user],
                # room version 11: from 12 on a room's creator keeps power nobody can
                # lower, and the ghost must not keep it (below)
                room_version=GHOST_ROOM_VERSION,
            )
            await self._lower_ghost(ghost, room_id, matrix_user)
            portal = Portal(network, remote.id, room_id, DIRECT, matrix_user)
            await self.store.save(portal)
            return portal

    async def _lower_ghost(self, ghost: Any, room_id: str, matrix_user: str) -> None:
        """The ghost made the 1:1 room (so it had every power): it keeps only what it
        needs — sending, and inviting the person back — and the person is above it, so
        it can never redact the person's messages or remove them."""
        levels = await ghost.get_state_event(room_id, EventType.ROOM_POWER_LEVELS)
        levels.users = {matrix_user: 100, ghost.mxid: 50}
        levels.redact = levels.kick = levels.ban = 100
        # straight to the homeserver: the intent's own check reads the new levels and
        # would refuse a user lowering themself
        url = Path.v3.rooms[room_id].state[str(EventType.ROOM_POWER_LEVELS)]
        await ghost.api.request(Method.PUT, url, content=levels.serialize())

    async def on_ghost_invite(self, event: MatrixEvent) -> bool:
        """A Matrix person invited one of our ghosts: open a 1:1 portal with that person."""
        parsed = self.ghosts.parse(event.state_key or "", list(self.connectors))
        if parsed is None:
            return False
        if self.bridge.is_ours(event.sender):
            return True  # the bot inviting a ghost into a portal: the ghost joins by itself
        network, remote_id = parsed
        try:
            if not self.may_use_bridge(event.sender):
                raise Refused(f"{event.sender} may not use this bridge")
            ghost = await self.ghosts.ensure(
                network, RemoteUser(remote_id, remote_id), rename=False
            )
        except Refused as exc:
            self.log.info(
                "ghost invite refused", sender=event.sender, ghost=event.state_key, why=str(exc)
            )
            with contextlib.suppress(MatrixRequestError):
                intent = self.bridge.intent(event.state_key)
                await intent.ensure_registered()
                await intent.leave_room(event.room_id, reason=f"Not bridged: {exc}")
            return True
        if self.store.for_room(event.room_id) is None and not event.content.get("is_direct"):
            await ghost.leave_room(
                event.room_id,
                reason="Invite me in a direct chat to talk with me, or bridge a whole group "
                "with !group link",
            )
            return True
        await ghost.join_room(event.room_id)
        if self.store.for_room(event.room_id) is None:
            # the newest direct chat is the one that reaches the person: an older one
            # says where the conversation went
            async with self._dm_lock:
                existing = self.portal_for_remote(network, remote_id, event.sender)
                if existing is not None:
                    await self._drop_direct(
                        existing,
                        f"This chat continues in the newer direct chat {event.room_id} "
                        f"(https://matrix.to/#/{event.room_id}).",
                    )
                portal = Portal(network, remote_id, event.room_id, DIRECT, event.sender)
                await self.store.save(portal)
            await self.connectors[network].connect(portal)
        return True

    async def _drop_direct(self, portal: Portal, notice: str | None = None) -> None:
        """``portal`` no longer reaches its Matrix person (they left it, or opened a newer
        one): forgotten, so the next message opens (or finds) the current chat; its ghost
        says why, if there is something to say, and leaves."""
        await self.store.delete(portal)
        ghost = self.bridge.intent(self.ghosts.user_id(portal.network, portal.remote_id))
        with contextlib.suppress(MatrixRequestError):
            if notice:
                await ghost.send_notice(portal.room_id, notice)
            await ghost.leave_room(portal.room_id)
        self.log.info("direct chat retired", room_id=portal.room_id, user=portal.matrix_user)

    # ----- Matrix → network -----
    async def on_matrix_event(self, event: MatrixEvent, ctx: EventContext) -> None:
        if event.ephemeral and event.type == "m.typing":
            await self._on_typing(event)
            return
        if event.ephemeral and event.type == "m.receipt":
            await self._on_receipt(event)
            return
        if event.ephemeral or self.bridge.is_ours(event.sender):
            return  # our own ghosts and bot: never send an echo back
        if event.type == "m.room.member":
            await self._on_member(event)
            return
        portal = self.store.for_room(event.room_id)
        if portal is None or portal.network not in self.connectors:
            return
        if event.type == "m.reaction" and not self.supports(portal.network, "reactions"):
            return  # a connector without reactions: they stay on Matrix
        if event.type in ("m.room.message", "m.reaction"):
            body = event.content.get("body")
            if isinstance(body, str) and len(body) > self.settings["max_body_chars"]:
                await self.outbox.tell(
                    event,
                    f"Not sent to {portal.network}: the message has {len(body)} characters, "
                    f"more than the {self.settings['max_body_chars']} the bridge relays.",
                )
                return
            decision = await self.bridge.authorize(
                event.sender,
                "room.post",
                portal.room_id,
                {"room_id": portal.room_id, "network": portal.network},
            )
            if not decision.allowed:
                await self.outbox.tell(event, f"Not sent to {portal.network}: {decision.reason}")
                return
        elif event.type != "m.room.redaction":
            return
        await self.outbox.enqueue(event, portal.network)

    async def _on_typing(self, event: MatrixEvent) -> None:
        """Who is typing in a portal room, without our own ghosts: straight to the
        connector (typing is not worth keeping in the outbox)."""
        portal = self.store.for_room(event.room_id)
        connector = self.connectors.get(portal.network) if portal else None
        if not isinstance(connector, TypingHandling):
            return
        user_ids = event.content.get("user_ids")
        if not isinstance(user_ids, list):
            return
        typing = [u for u in user_ids if isinstance(u, str) and not self.bridge.is_ours(u)]
        with contextlib.suppress(NetworkUnavailable, Refused):  # worth nothing later
            await connector.handle_matrix_typing(portal, typing)

    async def _on_receipt(self, event: MatrixEvent) -> None:
        """A Matrix person read up to a message that came from the network: the
        connector tells the network (straight away; a late read marker is worth little)."""
        portal = self.store.for_room(event.room_id)
        connector = self.connectors.get(portal.network) if portal else None
        if not isinstance(connector, ReadMarkerHandling):
            return
        for event_id, kinds in event.content.items():
            readers = kinds.get("m.read") if isinstance(kinds, dict) else None
            if not isinstance(readers, dict):
                continue
            remote_id = await self.store.remote_from_network(portal.network, event_id)
            if remote_id is None or remote_id.startswith("reaction "):
                continue
            for user_id in readers:
                if not isinstance(user_id, str) or self.bridge.is_ours(user_id):
                    continue
                sender = await self.people.sender(event.room_id, user_id)
                with contextlib.suppress(NetworkUnavailable, Refused):
                    await connector.handle_matrix_read(portal, sender, remote_id)

    async def remote_read(self, portal: Portal, sender: RemoteUser, target: str) -> None:
        """The person has seen the message ``target`` (and those before): their ghost's
        read receipt moves there."""
        found = await self.store.event_for(portal.network, target)
        if found is None or found[0] != portal.room_id:
            return
        ghost = await self.ghosts.ensure(portal.network, sender)
        await ghost.ensure_joined(portal.room_id)
        try:
            await ghost.send_receipt(portal.room_id, found[1])
        except MatrixRequestError as exc:
            self.log.info("could not move a read receipt", user=sender.id, error=str(exc))

    async def remote_typing(self, portal: Portal, sender: RemoteUser, typing: bool) -> None:
        """The person started (True) or stopped (False) typing: so does their ghost."""
        ghost = await self.ghosts.ensure(portal.network, sender)
        await ghost.ensure_joined(portal.room_id)
        try:
            await ghost.set_typing(portal.room_id, timeout=TYPING_MS if typing else 0)
        except MatrixRequestError as exc:
            self.log.info("could not show typing", user=sender.id, error=str(exc))

    async def _on_member(self, event: MatrixEvent) -> None:
        membership = event.content.get("membership")
        if membership == "invite" and self.bridge.is_ours(event.state_key or ""):
            return
        portal = self.store.for_room(event.room_id)
        if portal is None or event.state_key != event.sender:
            return
        self.people.saw_member(event)
        if portal.kind == DIRECT:
            if membership == "leave" and event.sender == portal.matrix_user:
                # the person left: their next message from the network opens a new chat
                async with self._dm_lock:
                    if self.store.for_room(event.room_id) is portal:
                        await self._drop_direct(portal)
            return
        connector = self.connectors.get(portal.network)
        if isinstance(connector, MembershipHandling) and membership in ("join", "leave"):
            sender = await self.people.sender(event.room_id, event.sender)
            await connector.handle_matrix_membership(portal, sender, membership)

    def room_intent(self, room_id: str):
        """Who speaks for the bridge in a portal room: the bot in groups, the remote
        person's ghost in a 1:1 chat (the bot is not in those)."""
        portal = self.store.for_room(room_id)
        if portal is not None and portal.kind == DIRECT:
            return self.bridge.intent(self.ghosts.user_id(portal.network, portal.remote_id))
        return self.bridge.bot

    # ----- Matrix people, for connectors (see people.MatrixPeople) -----
    async def matrix_sender(self, room_id: str, user_id: str) -> MatrixSender:
        return await self.people.sender(room_id, user_id)

    async def matrix_profile(self, user_id: str) -> MatrixSender | None:
        return await self.people.profile(user_id)

    async def matrix_avatar(self, mxc: str) -> FileData | None:
        return await self.people.avatar(mxc)

    # ----- the network's events, for connectors (see remote.RemoteEvents) -----
    async def remote_message(self, portal: Portal, sender: RemoteUser, message: Message) -> None:
        await self.remote.remote_message(portal, sender, message)

    async def remote_membership(self, portal: Portal, user: RemoteUser, membership: str) -> None:
        await self.remote.remote_membership(portal, user, membership)

    async def remote_edit(
        self, portal: Portal, sender: RemoteUser, target: str, message: Message
    ) -> None:
        await self.remote.remote_edit(portal, sender, target, message)

    async def remote_retraction(
        self, portal: Portal, sender: RemoteUser, target: str, retraction_id: str
    ) -> None:
        await self.remote.remote_retraction(portal, sender, target, retraction_id)

    async def remote_reactions(
        self, portal: Portal, sender: RemoteUser, target: str, keys: list[str], update_id: str
    ) -> None:
        await self.remote.remote_reactions(portal, sender, target, keys, update_id)

    async def remote_avatar(
        self,
        portal: Portal,
        user: RemoteUser,
        avatar_hash: str,
        fetch: Callable[[], Awaitable[FileData | None]],
    ) -> None:
        await self.remote.remote_avatar(portal, user, avatar_hash, fetch)

    async def fetch_url(self, url: str, allowed_prefixes: list[str]) -> FileData | None:
        return await self.remote.fetch_url(url, allowed_prefixes)

    async def event_for(self, network: str, remote_id: str) -> tuple[str, str] | None:
        """``(room_id, event_id)`` of the network's ``remote_id``, or None."""
        return await self.store.event_for(network, remote_id)
