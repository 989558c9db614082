"""The relay occupant of every linked room: it receives a room's messages once for
everybody on Matrix. After every (re)connection it rejoins each room and catches up with
what was said while the bridge or the server was away, from the room's archive
(``archive.py``; the join history in rooms without one), holding the room's live messages
until it is done, so they are handled in order."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import structlog

from ..connector import NetworkUnavailable, Portal, Refused, RemoteUser
from . import stanzas
from .archive import Archived, RoomArchives
from .reflections import Reflections
from .rooms import LEAVE_TIMEOUT, MucRooms

log = structlog.get_logger("anywhere.groups.xmpp")


class Relay:
    """``portals``: the linked rooms (room JID → portal). Given the rooms our occupants
    are in, the archives (None until the connector starts), the reflections of our own
    messages, the relay's address, the connector's settings (``relay_nickname``,
    ``history_on_link``, ``history_on_join``), ``stream()`` (the XMPP stream now, or
    None) and the inbound queue, which gets what the relay catches up with."""

    def __init__(
        self,
        rooms: MucRooms,
        archives: RoomArchives | None,
        reflections: Reflections,
        relay_jid: str,
        settings: dict[str, Any],
        stream: Callable[[], Any],
        inbound: asyncio.Queue,
    ) -> None:
        self.rooms = rooms
        self.archives = archives
        self.reflections = reflections
        self.jid = relay_jid
        self.settings = settings
        self.stream = stream
        self.inbound = inbound
        self.portals: dict[str, Portal] = {}
        # rooms catching up from their archive → live messages held until it is done
        self._catching_up: dict[str, list[tuple[Any, RemoteUser | None]]] = {}
        self._archived_rooms: dict[str, bool] = {}  # room → has an archive (this connection)
        self._subject_waits: dict[str, asyncio.Future] = {}

    async def rejoin_all(self) -> None:
        """After every (re)connection: back into every linked room, all at once."""

        async def rejoin(room: str) -> None:
            try:
                await self.join(room, fresh=True)
            except (NetworkUnavailable, Refused) as exc:
                log.warning("cannot join a linked room", room=room, error=str(exc))

        await asyncio.gather(*(rejoin(room) for room in list(self.portals)))

    async def join(self, room: str, *, fresh: bool = False) -> None:
        """The relay into ``room``, caught up with what the room said since the bridge
        last handled one of its messages: from the room's archive, or (a room without
        one) from the join history."""
        nick = self.settings["relay_nickname"]
        if room not in self._archived_rooms:
            self._archived_rooms[room] = await self.archives.has_archive(self.send_iq, room)
            if not self._archived_rooms[room]:
                log.warning(
                    "the room has no message archive (XEP-0313; Prosody: muc_mam): after a "
                    "restart the bridge catches up from the join history only, so nothing "
                    "is lost only while less was said than the room's history keeps",
                    room=room,
                )
        if self._archived_rooms[room]:
            self._catching_up.setdefault(room, [])
            try:
                await self.rooms.join(room, self.jid, nick)
                await self.archives.catch_up(
                    self.send_iq,
                    room,
                    lambda archived: self._archived(room, archived),
                    self.settings["history_on_link"],
                )
            finally:
                for item in self._catching_up.pop(room, []):
                    self.inbound.put_nowait(("message", item))
            return
        if fresh:
            # leave first: after a crash the server may still count the relay as present,
            # and only a fresh join sends the history that fills the gap
            await self.rooms.leave_first(room, self.jid, nick)
        subject = asyncio.get_running_loop().create_future()
        self._subject_waits[room] = subject
        try:
            await self.rooms.join(room, self.jid, nick, history=self.settings["history_on_join"])
            # the room sends its history, then its subject: wait for it, so the outbox
            # knows what the room already has before it sends anything
            await asyncio.wait_for(subject, LEAVE_TIMEOUT)
        except TimeoutError:
            pass
        finally:
            self._subject_waits.pop(room, None)

    async def send_iq(self, to: str, itype: str, payload: ET.Element, timeout: float = 15.0) -> Any:
        """An iq from the relay, its answer (slixmpp raises IqError/IqTimeout)."""
        stream = self.stream()
        if stream is None:
            raise NetworkUnavailable("not connected to the XMPP server")
        make = stream.make_iq_get if itype == "get" else stream.make_iq_set
        iq = make(ito=to, ifrom=self.jid)
        iq.append(payload)
        return await iq.send(timeout=timeout)

    def held(self, room: str, item: tuple[Any, RemoteUser | None]) -> bool:
        """A live message of ``room``: held (True) while the room catches up, to come
        after what the archive brings."""
        held = self._catching_up.get(room)
        if held is None:
            return False
        held.append(item)
        return True

    def subject(self, room: str, xml: ET.Element) -> None:
        """A message of ``room``: its subject ends the join history."""
        waiter = self._subject_waits.get(room)
        if waiter and not waiter.done() and stanzas.has_subject(xml):
            waiter.set_result(None)

    def _archived(self, room: str, archived: Archived) -> None:
        """A message from the room's archive (catching up), handled in order."""
        incoming_id = stanzas.read_message(archived.message).id
        if stanzas.is_bridge_id(incoming_id):
            self.reflections.remember(room, incoming_id)
        self.inbound.put_nowait(("archived", (room, archived)))

    def disconnected(self) -> None:
        """Held messages are dropped (the archive has them: the next catch-up gets them)."""
        self._catching_up.clear()
        self._archived_rooms.clear()
