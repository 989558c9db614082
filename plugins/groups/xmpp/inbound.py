"""What the XMPP connector receives: presences (people joining, leaving, renaming,
their avatars) and messages (rooms and 1:1 chats), handed to the hub in order."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from slixmpp import JID

from ..connector import (
    Message,
    Portal,
    Refused,
    RemoteUser,
)
from ..links import is_allowed
from . import stanzas
from .addresses import NETWORK, XmppAddresses
from .archive import Archived, RoomArchives, archive_id_of
from .avatars import Avatars
from .reflections import Reflections
from .relay import Relay
from .rooms import MucRooms

if TYPE_CHECKING:
    from ..host import ConnectorHost

log = structlog.get_logger("anywhere.groups.xmpp")


class XmppInbound:
    """Receiving: stanzas come in through :meth:`on_presence` and :meth:`on_message`
    (the stream's handlers), wait in ``queue`` and reach the hub one at a time, in the
    order they came (:meth:`run`). Given the host (None until the connector starts), the
    connector's settings (``relay_nickname``, ``file_url_prefixes``), its addresses, the
    rooms our occupants are in, the relay, the reflections of our own messages, the
    archives (None until the connector starts), the avatars and the queue."""

    def __init__(
        self,
        host: ConnectorHost | None,
        settings: dict[str, Any],
        addresses: XmppAddresses,
        rooms: MucRooms,
        relay: Relay,
        reflections: Reflections,
        archives: RoomArchives | None,
        avatars: Avatars,
        queue: asyncio.Queue,
    ) -> None:
        self.hub = host
        self.settings = settings
        self.addresses = addresses
        self.rooms = rooms
        self.relay = relay
        self.reflections = reflections
        self.archives = archives
        self.avatars = avatars
        self.queue = queue
        self._remote_typing: set[tuple[str, str]] = set()  # (portal room, XMPP person)

    def on_presence(self, presence: Any) -> None:
        frm, to = presence["from"], presence["to"]
        room, nick = frm.bare, frm.resource
        ptype = presence["type"]
        info = stanzas.read_muc_presence(presence.xml, room, nick, ptype)
        if self.rooms.answered(room, to.full, ptype, info):
            return
        portal = self.relay.portals.get(room)
        if to.full != self.addresses.relay_jid or portal is None or ptype == "error":
            return
        self.rooms.saw(room, nick, ptype != "unavailable", info.real_jid)
        if not nick or self.rooms.is_ours(room, nick):
            return
        if ptype == "unavailable" and "303" in info.codes:
            # a nickname change: the new name's presence follows, and a person the room
            # shows only by nickname keeps their ghost under the new name
            if info.new_nick and not info.real_jid:
                self.rooms.renamed(room, nick, info.new_nick)
            return
        occupant = stanzas.occupant_id(presence.xml)
        user = self.rooms.occupant_user(room, nick, info.real_jid, occupant)
        membership = "leave" if ptype == "unavailable" else "join"
        self.queue.put_nowait(("membership", (portal, user, membership)))
        if membership == "leave":  # gone: their nickname may be someone else's next
            self.rooms.gone(room, nick)
        avatar = stanzas.photo_hash(presence.xml) if membership == "join" else None
        if avatar:  # XEP-0153: the occupant's vCard has this photo
            self.queue.put_nowait(("avatar", (portal, user, f"{room}/{nick}", avatar)))

    def on_message(self, msg: Any) -> None:
        frm, to = msg["from"], msg["to"]
        relay_jid = self.addresses.relay_jid
        if to.full == relay_jid and self.archives and self.archives.on_result(msg.xml):
            return  # one result of an archive query: the query hands it on
        sender = None
        if msg["type"] == "groupchat" and to.full == relay_jid:
            room = frm.bare
            if frm.resource:  # who sent it, as the room shows them now (names change)
                real = self.rooms.real_jid(room, frm.resource)
                occupant = stanzas.occupant_id(msg.xml)
                sender = self.rooms.occupant_user(room, frm.resource, real, occupant)
            if frm.resource and self.rooms.is_ours(room, frm.resource):
                # ours (the room says who sent it: a nickname only we hold there):
                # remembered so that a message a crash left unconfirmed is not sent twice
                self.reflections.reflected(room, stanzas.read_message(msg.xml).id)
            self.relay.subject(room, msg.xml)
            if self.relay.held(room, (msg, sender)):  # after what the archive query brings
                return
        self.queue.put_nowait(("message", (msg, sender)))

    async def run(self) -> None:
        """Messages and room presences, one at a time, in the order they came."""
        while True:
            kind, item = await self.queue.get()
            try:
                if kind == "message":
                    await self._handle_message(*item)
                elif kind == "archived":
                    await self._handle_archived(*item)
                elif kind == "avatar":
                    await self.avatars.remote_photo(*item)
                else:
                    await self.hub.remote_membership(*item)
            except Refused as exc:
                log.warning("an XMPP stanza was not bridged", kind=kind, why=str(exc))
            except Exception:
                log.exception(
                    "an XMPP stanza could not be bridged", kind=kind, item=str(item)[:2000]
                )

    async def _handle_archived(self, room: str, archived: Archived) -> None:
        message = archived.message
        portal = self.relay.portals.get(room)
        frm = JID(message.get("from", ""))
        if portal is None or frm.bare != room:
            return
        try:
            if frm.resource and message.get("type") == "groupchat":
                incoming = stanzas.read_message(message)
                incoming.delayed = True
                if not await self._sent_unconfirmed(portal, incoming.id):
                    real = stanzas.muc_user_jid(message)
                    occupant = stanzas.occupant_id(message)
                    sender = self.rooms.occupant_user(room, frm.resource, real, occupant)
                    extra = {"timestamp": archived.stamp_ms, "history": archived.history}
                    await self._bridge_incoming(portal, sender, room, incoming, extra)
        finally:
            await self.archives.handled(room, archived.id)

    async def _sent_unconfirmed(self, portal: Portal, incoming_id: str) -> bool:
        """Whether an archived message is one the bridge sent but, stopped by a crash,
        never recorded: its id is the one a message still in the outbox gets. (Those it
        recorded are in the message map, which the hub checks.)"""
        if not stanzas.is_bridge_id(incoming_id):
            return False
        pending = await self.hub.bridge.db.fetch(
            "SELECT event_id FROM groups_outbox WHERE room_id = $1", portal.room_id
        )
        return any(stanzas.stanza_id_for(row["event_id"]) == incoming_id for row in pending)

    async def _handle_message(self, msg: Any, occupant_user: RemoteUser | None) -> None:
        mtype = msg["type"]
        if mtype == "error":
            return
        frm, to = msg["from"], msg["to"]
        incoming = stanzas.read_message(msg.xml)
        if mtype == "groupchat":
            portal = self.relay.portals.get(frm.bare)
            if portal is None or to.full != self.addresses.relay_jid or not frm.resource:
                return  # one copy (the relay's) per room message; the subject has no nick
            archive_id = archive_id_of(msg.xml, frm.bare)
            try:
                if self.rooms.is_ours(frm.bare, frm.resource):
                    return  # our own puppets' messages, reflected by the room
                await self._bridge_incoming(portal, occupant_user, frm.bare, incoming)
            finally:
                if archive_id:  # catching up after a restart starts after it
                    await self.archives.handled(frm.bare, archive_id)
            return
        matrix_user = self.addresses.matrix_user_of(to)
        if matrix_user is None or not frm.user:
            return
        sender = RemoteUser(frm.bare, incoming.nick or frm.user)
        if incoming.body or incoming.oob_url or incoming.location or incoming.retract:
            try:
                portal = await self.hub.direct_portal(NETWORK, sender, matrix_user)
            except Refused as exc:
                log.info("a 1:1 message was refused", sender=sender.id, why=str(exc))
                self._bounce(msg, str(exc))
                return
        else:  # typing or a reaction never opens a chat by itself
            portal = self.hub.portal_for_remote(NETWORK, sender.id, matrix_user)
            if portal is None:
                return
        await self._bridge_incoming(portal, sender, frm.bare, incoming)

    def _bounce(self, msg: Any, text: str) -> None:
        """Answer a message that will not be bridged with an error saying why."""
        error = msg.reply(clear=False)
        error["type"] = "error"
        error["error"]["type"] = "cancel"
        error["error"]["condition"] = "not-acceptable"
        error["error"]["text"] = f"Not delivered: {text}"
        error.send()

    async def _bridge_incoming(
        self,
        portal: Portal,
        sender: RemoteUser,
        chat: str,
        incoming: stanzas.Incoming,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``extra``: for :attr:`Message.extra` (``timestamp`` in ms and ``history`` for a
        message from the room's archive)."""
        msg_id = incoming.id or "nid" + str(abs(hash((chat, incoming.body))))
        remote_id = f"{chat}#{msg_id}"
        if incoming.chat_state and not incoming.delayed:
            key = (portal.room_id, sender.id)
            if incoming.chat_state == "composing":
                self._remote_typing.add(key)
                await self.hub.remote_typing(portal, sender, True)
            elif key in self._remote_typing:
                self._remote_typing.discard(key)
                await self.hub.remote_typing(portal, sender, False)
        if incoming.displayed and not incoming.body and not incoming.delayed:
            await self.hub.remote_read(portal, sender, f"{chat}#{incoming.displayed}")
            return
        if incoming.reactions is not None:
            target, keys = incoming.reactions
            await self.hub.remote_reactions(portal, sender, f"{chat}#{target}", keys, remote_id)
            return
        if incoming.retract:
            await self.hub.remote_retraction(
                portal, sender, f"{chat}#{incoming.retract}", remote_id
            )
            return
        message = Message(remote_id, incoming.body)
        message.extra.update(extra or {})
        if incoming.reply_to:
            message.reply_to = f"{chat}#{incoming.reply_to}"
        if incoming.location is not None:
            message.location = incoming.location
        elif incoming.oob_url and is_allowed(incoming.oob_url, self.settings["file_url_prefixes"]):
            message.file = await self.hub.fetch_url(
                incoming.oob_url, self.settings["file_url_prefixes"]
            )
            if message.file is None:
                message.text = incoming.body or incoming.oob_url
        if not message.text and message.file is None and message.location is None:
            return  # chat states, receipts and other body-less stanzas
        if incoming.replace:
            await self.hub.remote_edit(portal, sender, f"{chat}#{incoming.replace}", message)
        else:
            await self.hub.remote_message(portal, sender, message)
