"""XMPP as a network connector (slixmpp ``ComponentXMPP``, XEP-0114).

Every Matrix person appears in XMPP as their own address on the component
(``alice=3aexample.org@matrix.example.org``) and as their own occupant in a room, with
their display name as nickname. One relay occupant per linked room receives the room's
messages once for everybody on Matrix; after every (re)connection it catches up with
what was said while the bridge or the server was away from the room's archive
(``archive.py``; the join history in rooms without one), and only then does the outbox
send (the hub drops what it has already seen). Messages to a Matrix person's address
open a 1:1 portal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import structlog
from slixmpp import JID, ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream.handler import Callback

from ..connector import (
    DIRECT,
    Connector,
    FileData,
    MatrixSender,
    Message,
    NetworkUnavailable,
    Portal,
    Refused,
)
from . import stanzas
from .addresses import NETWORK, XmppAddresses
from .archive import RoomArchives
from .avatars import Avatars
from .inbound import XmppInbound
from .reflections import Reflections
from .relay import Relay
from .rooms import MucRooms
from .stanzas import (
    NS_CORRECT,
    NS_FASTEN,
    NS_REPLY,
    NS_RETRACT_0,
    NS_RETRACT_1,
    NS_SID,
    element,
)

if TYPE_CHECKING:
    from ..host import ConnectorHost

log = structlog.get_logger("anywhere.groups.xmpp")
CONFIRM_TIMEOUT = 10.0  # for a sent message to leave the bridge and come back from its room
CONNECT_TIMEOUT = 15.0


class Component(ComponentXMPP):
    def __init__(self, connector: XmppConnector, jid: str, secret: str) -> None:
        super().__init__(jid, secret)
        inbound = connector.inbound
        self.add_event_handler("message", inbound.on_message)
        self.register_handler(
            Callback("Bodyless", stanzas.BodylessMessages(self.default_ns), inbound.on_message)
        )
        self.add_event_handler("presence", inbound.on_presence)
        self.register_handler(
            Callback(
                "vCard", stanzas.VcardRequests(self.default_ns), connector.avatars.on_vcard_request
            )
        )


class XmppConnector(Connector):
    """Composed of parts, built from the settings by :meth:`configure`: its ``addresses``,
    the ``rooms`` its occupants are in, the ``relay`` in every linked room, the
    ``reflections`` of what it sent, the ``avatars`` both ways and the ``inbound``
    handler. The connector itself keeps the connection and sends."""

    network = NETWORK

    def __init__(self) -> None:
        self.hub: ConnectorHost | None = None
        self.settings: dict[str, Any] = {}
        self.xmpp: Component | None = None
        self.connected = False
        self._task: asyncio.Task | None = None
        self._inbound_task: asyncio.Task | None = None
        self._state: asyncio.Future | None = None
        self._typing: dict[str, set[str]] = {}  # portal room → Matrix people typing there
        self._ready = False  # rejoined every room and caught up: the outbox may send

    def configure(
        self, settings: dict[str, Any], matrix_domain: str, host: ConnectorHost | None = None
    ) -> None:
        """Build the parts for ``settings`` (:meth:`start` does, with the host; a test
        feeding stanzas to ``inbound`` without a server may, without one)."""
        self.hub, self.settings = host, settings
        self.addresses = XmppAddresses(settings["component_jid"], matrix_domain)
        self.rooms = MucRooms(lambda: self.xmpp, settings["relay_nickname"])
        self.reflections = Reflections()
        self.archives = RoomArchives(host.bridge) if host is not None else None
        queue: asyncio.Queue = asyncio.Queue()
        self.relay = Relay(
            self.rooms,
            self.archives,
            self.reflections,
            self.addresses.relay_jid,
            settings,
            lambda: self.xmpp,
            queue,
        )
        self.avatars = Avatars(host, self.addresses, self._live_stream)
        self.inbound = XmppInbound(
            host,
            settings,
            self.addresses,
            self.rooms,
            self.relay,
            self.reflections,
            self.archives,
            self.avatars,
            queue,
        )

    def _live_stream(self) -> Component | None:
        return self.xmpp if self.connected else None

    # ----- the required interface -----
    async def start(self, hub: ConnectorHost, settings: dict[str, Any]) -> None:
        self.configure(settings, hub.bridge.config["homeserver.domain"], hub)
        self._inbound_task = asyncio.create_task(self.inbound.run())
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in (self._task, self._inbound_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.xmpp is not None:
            if self.connected:  # leave the rooms, so people see Matrix people go
                self.rooms.leave_all()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.xmpp.disconnect(wait=1), 2)
            self.xmpp.abort()
            await self._retire_stream()

    async def connect(self, portal: Portal) -> None:
        if portal.kind == DIRECT:
            return
        self.relay.portals[portal.remote_id] = portal
        if self.connected:
            await self.relay.join(portal.remote_id)

    async def handle_matrix_message(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        return await self._send(portal, sender, message)

    # ----- optional capabilities -----
    async def resolve_group(self, address: str) -> tuple[str, str]:
        try:
            jid = JID(address)
        except InvalidJID as exc:
            raise Refused(f"{address!r} is not an XMPP address ({exc})") from exc
        if not jid.user or jid.resource:
            raise Refused(f"write the room's address as ROOM@conference.server, not {address!r}")
        return jid.bare.lower(), jid.user

    async def disconnect(self, portal: Portal) -> None:
        room = portal.remote_id
        self.relay.portals.pop(room, None)
        if self.archives is not None:
            await self.archives.forget(room)
        if self.connected:
            self.rooms.leave_all(room)

    async def handle_matrix_edit(
        self, portal: Portal, sender: MatrixSender, target: str, message: Message
    ) -> str:
        return await self._send(portal, sender, message, replace=target.rsplit("#", 1)[-1])

    async def handle_matrix_redaction(
        self, portal: Portal, sender: MatrixSender, target: str, event_id: str
    ) -> str:
        target_id = target.rsplit("#", 1)[-1]
        extra = [
            element(NS_RETRACT_1, "retract", id=target_id),
            self._fasten_retract(target_id),
        ]
        return await self._send(
            portal,
            sender,
            Message(event_id, "This person retracted a message."),
            extra=extra,
        )

    async def handle_matrix_reaction(
        self, portal: Portal, sender: MatrixSender, target: str, keys: list[str]
    ) -> None:
        """XEP-0444: the occupant's whole set of reactions to the message."""
        target_id = target.rsplit("#", 1)[-1]
        update = Message(f"reaction|{target}|{sender.user_id}|{time.time_ns()}", "")
        await self._send(portal, sender, update, extra=[stanzas.reactions(target_id, keys)])

    async def handle_matrix_typing(self, portal: Portal, user_ids: list[str]) -> None:
        """XEP-0085: ``composing`` from each Matrix person who started typing, ``paused``
        from each who stopped. In a room, someone who starts typing joins it first (as
        their first message would); reading alone never makes anyone join."""
        if not self.connected or self.xmpp is None or self.hub is None:
            return
        now, before = set(user_ids), self._typing.get(portal.room_id, set())
        self._typing[portal.room_id] = now
        changes = [(u, "composing") for u in sorted(now - before)]
        changes += [(u, "paused") for u in sorted(before - now)]
        for user_id, state in changes:
            occupant = self.addresses.puppet_jid(user_id)
            if portal.kind == DIRECT:
                mtype = "chat"
            elif self.rooms.nick(portal.remote_id, occupant) is not None:
                mtype = "groupchat"
            elif state == "composing":
                sender = await self.hub.matrix_sender(portal.room_id, user_id)
                await self._join_as(portal.remote_id, sender)
                mtype = "groupchat"
            else:
                continue
            msg = self.xmpp.make_message(mto=portal.remote_id, mtype=mtype, mfrom=occupant)
            msg.append(element(stanzas.NS_CHATSTATES, state))
            msg.send()

    async def handle_matrix_read(self, portal: Portal, sender: MatrixSender, target: str) -> None:
        """XEP-0333 ``displayed``, from the reader's own address or occupant (in a room
        only once they are in it: a read marker alone does not make anyone join)."""
        if not self.connected or self.xmpp is None:
            return
        occupant = self.addresses.puppet_jid(sender.user_id)
        if portal.kind == DIRECT:
            mtype = "chat"
        elif self.rooms.nick(portal.remote_id, occupant) is not None:
            mtype = "groupchat"
        else:
            return
        msg = self.xmpp.make_message(mto=portal.remote_id, mtype=mtype, mfrom=occupant)
        msg.append(element(stanzas.NS_MARKERS, "displayed", id=target.rsplit("#", 1)[-1]))
        msg.send()

    async def handle_matrix_location(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        loc = message.location
        text = f"{loc.description} {loc.geo_uri}".strip()
        return await self._send(
            portal, sender, Message(message.id, text), extra=[stanzas.geoloc(loc)]
        )

    async def handle_matrix_file(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        if not self.settings["upload_jid"]:
            raise Refused(
                "files need an HTTP upload service: the operator sets "
                "plugins.settings.groups.xmpp.upload_jid"
            )
        if not self._ready or self.xmpp is None:
            raise NetworkUnavailable("not connected to the XMPP server, or catching up")
        url = await self._upload(self.addresses.puppet_jid(sender.user_id), message.file)
        oob = element(stanzas.NS_OOB, "x")
        oob.append(element(stanzas.NS_OOB, "url", url))
        return await self._send(portal, sender, Message(message.id, url), extra=[oob])

    async def _upload(self, uploader: str, file: FileData) -> str:
        """Put ``file`` on the XMPP server's HTTP upload service; return its GET URL."""
        iq = self.xmpp.make_iq_get(ito=self.settings["upload_jid"], ifrom=uploader)
        iq.append(
            element(
                stanzas.NS_UPLOAD,
                "request",
                filename=stanzas.clean_text(file.name)[:200] or "file",
                size=str(len(file.data)),
                content_type=file.mimetype,
            )
        )
        try:
            result = await iq.send(timeout=15)
        except IqTimeout as exc:
            raise NetworkUnavailable("the upload service did not answer") from exc
        except IqError as exc:
            raise Refused(f"the XMPP server refused the file ({exc.condition})") from exc
        put, get, headers = stanzas.read_slot(result.xml)
        if not put or not get:
            raise Refused("the XMPP server's upload service gave no upload slot")
        headers["Content-Type"] = file.mimetype
        async with self.hub.bridge.http.put(put, data=file.data, headers=headers) as resp:
            if resp.status not in (200, 201):
                raise Refused(f"the XMPP server's upload service answered HTTP {resp.status}")
        return get

    async def handle_matrix_membership(
        self, portal: Portal, sender: MatrixSender, membership: str
    ) -> None:
        if portal.kind == DIRECT or not self.connected:
            return
        room, occupant = portal.remote_id, self.addresses.puppet_jid(sender.user_id)
        joined_as = self.rooms.nick(room, occupant)
        if membership == "leave":
            self.rooms.leave(room, occupant)
        elif membership == "join" and joined_as is not None:
            nick = stanzas.clean_text(sender.displayname)[:64] or "Matrix user"
            before = self.avatars.known_hash(sender.user_id)
            photo = await self.avatars.photo_hash(sender)
            if joined_as != nick or photo != before:
                # a new display name is a new nickname; a new avatar, a new photo hash
                self.rooms.rename(room, occupant, nick, [stanzas.vcard_update(photo)])

    async def _join_as(self, room: str, sender: MatrixSender) -> str:
        """The Matrix person in ``room`` under their display name, with their avatar's
        hash (joined when not in yet); their nickname there."""
        nick = stanzas.clean_text(sender.displayname)[:64].strip() or "Matrix user"
        photo = await self.avatars.photo_hash(sender)
        return await self.rooms.join(
            room, self.addresses.puppet_jid(sender.user_id), nick, photo=photo
        )

    # ----- connection -----
    async def _run(self) -> None:
        delay = 0.5
        max_delay = float(self.settings["reconnect_max_delay"])
        loop = asyncio.get_running_loop()
        while True:
            self.xmpp = Component(self, self.addresses.domain, self.settings["secret"])
            self._state = loop.create_future()
            for name, outcome in (
                ("session_start", "up"),
                ("connection_failed", "failed"),
                ("disconnected", "down"),
                ("stream_error", "down"),
            ):
                self.xmpp.add_event_handler(name, self._outcome_handler(outcome))
            self.xmpp.connect(self.settings["host"], self.settings["port"])
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel
                # (the connector's stop) that arrives as the session starts.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    outcome = await asyncio.shield(self._state)
            except TimeoutError:
                outcome = "failed"
            if outcome == "up":
                delay = 0.5
                self._state = loop.create_future()
                self.connected = True
                log.info("connected to the XMPP server", component=self.addresses.domain)
                await self.relay.rejoin_all()
                self._ready = True  # every room caught up: what the outbox sends is new
                self.hub.network_up(self.network)
                await self._state
                log.warning("disconnected from the XMPP server; reconnecting")
            else:
                log.warning(
                    "cannot reach the XMPP server; retrying",
                    host=self.settings["host"],
                    port=self.settings["port"],
                    retry_in=delay,
                )
            self.connected = self._ready = False
            self.rooms.disconnected()
            self.relay.disconnected()
            self.reflections.disconnected()
            self.xmpp.cancel_connection_attempt()
            self.xmpp.abort()
            await self._retire_stream()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def _retire_stream(self) -> None:
        """slixmpp cancels a stream's outgoing-filter task only when the stream object is
        garbage-collected, and asyncio then logs "Task was destroyed but it is pending!"
        for every reconnection: cancel and await it when a stream is done with."""
        task = getattr(self.xmpp, "_run_out_filters", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _outcome_handler(self, outcome: str):
        def handler(_event: Any) -> None:
            if self._state is not None and not self._state.done():
                self._state.set_result(outcome)

        return handler

    def _fasten_retract(self, target_id: str) -> ET.Element:
        fasten = element(NS_FASTEN, "apply-to", id=target_id)
        fasten.append(element(NS_RETRACT_0, "retract"))
        return fasten

    # ----- sending -----
    async def _send(
        self,
        portal: Portal,
        sender: MatrixSender,
        message: Message,
        *,
        replace: str | None = None,
        extra: list[ET.Element] = (),
    ) -> str:
        if not self.connected or self.xmpp is None:
            raise NetworkUnavailable("not connected to the XMPP server")
        if not self._ready:
            raise NetworkUnavailable("rejoining the rooms and catching up")
        occupant = self.addresses.puppet_jid(sender.user_id)
        if portal.kind == DIRECT:
            to, mtype, chat = portal.remote_id, "chat", portal.remote_id
        else:
            chat = portal.remote_id
            await self._join_as(chat, sender)
            to, mtype = chat, "groupchat"
        stanza_id = stanzas.stanza_id_for(message.id)
        if portal.kind != DIRECT and self.reflections.has(chat, stanza_id):
            return f"{chat}#{stanza_id}"  # the room already has it (sent before a crash)
        msg = self.xmpp.make_message(
            mto=to, mbody=stanzas.clean_text(message.text) or None, mtype=mtype, mfrom=occupant
        )
        msg["id"] = stanza_id
        msg.append(element(NS_SID, "origin-id", id=stanza_id))
        if portal.kind == DIRECT:
            msg.append(element(stanzas.NS_NICK, "nick", sender.displayname))
        if replace:
            msg.append(element(NS_CORRECT, "replace", id=replace))
        if message.reply_to:
            msg.append(element(NS_REPLY, "reply", id=message.reply_to.rsplit("#", 1)[-1]))
        for el in extra:
            msg.append(el)
        confirmed = None
        if portal.kind != DIRECT:
            confirmed = self.reflections.expect(chat, stanza_id)
        try:
            msg.send()
            await self._delivered(confirmed)
        finally:
            self.reflections.forget(chat, stanza_id)
        return f"{chat}#{stanza_id}"

    async def _delivered(self, confirmed: asyncio.Future | None) -> None:
        """The message has left the bridge (slixmpp queues what it sends: a crash before
        the queue is written would lose it after the outbox let it go) and, in a room,
        the room has reflected it to its sender — only then is it the room's.
        NetworkUnavailable otherwise: the outbox keeps it, and a late reflection makes
        the next try a no-op instead of a second copy."""
        try:
            await asyncio.wait_for(self.xmpp.waiting_queue.join(), CONFIRM_TIMEOUT)
            if confirmed is not None:
                await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT)
        except TimeoutError as exc:
            raise NetworkUnavailable("the XMPP server did not confirm the message") from exc
