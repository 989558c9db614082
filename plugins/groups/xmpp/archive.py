"""Catching up with a linked room from its archive (Message Archive Management,
XEP-0313; Prosody's ``muc_mam``), by the archive id of the last room message the bridge
handled (kept in ``groups_xmpp_room``), page by page.

The room stamps every message it archives with its archive id (a XEP-0359 ``stanza-id``
``by`` the room, which the room strips from what clients send), so the position is
exact whatever the room's history length; a bridge down longer than the archive keeps
messages (Prosody: ``muc_log_expires_after``, a week by default) loses the gap, and says
so in its log. Rooms without an archive fall back to the join history (``history_on_join``):
then exactly-once after a restart depends on the room's history length.
"""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from slixmpp.exceptions import IqError, IqTimeout

from ..connector import NetworkUnavailable
from .stanzas import NS_DELAY, NS_SID, child, element

if TYPE_CHECKING:
    from anywhere.bridge.runtime import Bridge

log = structlog.get_logger("anywhere.groups.xmpp")

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
PAGE = 50  # Prosody's max_archive_query_results default: ask no more per page
QUERY_TIMEOUT = 30.0


@dataclass
class Archived:
    """One message from a room's archive."""

    id: str  # the archive's id of it
    message: ET.Element  # the message as the room sent it
    stamp_ms: int | None  # when the room received it (XEP-0203 delay), in ms
    history: bool = False  # shown as history of a room just linked


@dataclass
class _Query:
    room: str
    results: list[Archived] = field(default_factory=list)


def _stamp_ms(forwarded: ET.Element) -> int | None:
    delay = child(forwarded, NS_DELAY, "delay")
    try:
        when = datetime.fromisoformat((delay.get("stamp") or "").replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return int(when.timestamp() * 1000)


def archive_id_of(xml: ET.Element, room: str) -> str | None:
    """The archive id the room stamped on a live message (a ``stanza-id`` ``by`` the
    room), or None."""
    for stamp in xml.findall(f"{{{NS_SID}}}stanza-id"):
        if stamp.get("by") == room and stamp.get("id"):
            return stamp.get("id")
    return None


class RoomArchives:
    """The archives of the linked rooms: whether a room has one, the position the bridge
    has handled, and the catch-up queries. Results reach :meth:`on_result` (from the
    connector's message handler); everything else goes through ``send_iq``."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._queries: dict[str, _Query] = {}
        self._ids = itertools.count(1)
        self._positions: dict[str, str | None] = {}

    # ----- what the room says about itself -----
    async def has_archive(self, send_iq: Any, room: str) -> bool:
        """Whether ``room`` advertises MAM (disco#info)."""
        query = element(NS_DISCO_INFO, "query")
        try:
            result = await send_iq(room, "get", query)
        except (IqError, IqTimeout):
            return False
        return any(
            feature.get("var") == NS_MAM
            for feature in result.xml.iter(f"{{{NS_DISCO_INFO}}}feature")
        )

    # ----- the position -----
    async def position(self, room: str) -> str | None:
        if room not in self._positions:
            self._positions[room] = await self.bridge.db.fetchval(
                "SELECT archive_id FROM groups_xmpp_room WHERE room = $1", room
            )
        return self._positions[room]

    async def handled(self, room: str, archive_id: str) -> None:
        """The room's message ``archive_id`` has been handled: catch-up starts after it."""
        if self._positions.get(room) == archive_id:
            return
        self._positions[room] = archive_id
        await self.bridge.db.execute(
            "INSERT INTO groups_xmpp_room (room, archive_id) VALUES ($1, $2) "
            "ON CONFLICT (room) DO UPDATE SET archive_id = $2",
            room,
            archive_id,
        )

    async def forget(self, room: str) -> None:
        """The room is unlinked: a later link starts afresh."""
        self._positions.pop(room, None)
        await self.bridge.db.execute("DELETE FROM groups_xmpp_room WHERE room = $1", room)

    # ----- queries -----
    def on_result(self, xml: ET.Element) -> bool:
        """A message carrying an archive result: kept for its query. True if it was one."""
        result = child(xml, NS_MAM, "result")
        if result is None:
            return False
        query = self._queries.get(result.get("queryid", ""))
        forwarded = child(result, NS_FORWARD, "forwarded")
        if query is None or forwarded is None or not result.get("id"):
            return True  # not ours, or malformed: ignored
        frm = xml.get("from", "")
        if frm.split("/", 1)[0].lower() != query.room:
            return True  # an archive result must come from the room itself
        inner = next((el for el in forwarded if el.tag.endswith("}message")), None)
        if inner is not None:
            query.results.append(Archived(result.get("id"), inner, _stamp_ms(forwarded)))
        return True

    async def page(
        self,
        send_iq: Any,
        room: str,
        *,
        after: str | None = None,
        newest: int = 0,
        before: str | None = None,
    ) -> tuple[list[Archived], bool]:
        """One page of the room's archive, oldest first: after ``after``, or with
        ``newest`` the newest that many (before ``before``, if given). ``(results,
        complete)``; raises :class:`LookupError` when the archive no longer has
        ``after``."""
        query_id = f"q{next(self._ids)}"
        query = element(NS_MAM, "query", queryid=query_id)
        rsm = element(NS_RSM, "set")
        rsm.append(element(NS_RSM, "max", str(min(newest, PAGE)) if newest else str(PAGE)))
        if newest:
            rsm.append(element(NS_RSM, "before", before or ""))
        elif after:
            rsm.append(element(NS_RSM, "after", after))
        query.append(rsm)
        self._queries[query_id] = _Query(room)
        try:
            result = await send_iq(room, "set", query, timeout=QUERY_TIMEOUT)
        except IqError as exc:
            if exc.condition == "item-not-found":
                raise LookupError(after or before) from exc
            raise NetworkUnavailable(f"{room} refused the archive query ({exc.condition})") from exc
        except IqTimeout as exc:
            raise NetworkUnavailable(f"{room} did not answer the archive query") from exc
        finally:
            found = self._queries.pop(query_id)
        fin = child(result.xml, NS_MAM, "fin")
        complete = fin is None or fin.get("complete") in ("true", "1") or not found.results
        return found.results, complete

    async def newest(self, send_iq: Any, room: str, count: int) -> list[Archived]:
        """The newest ``count`` (at least 1) messages of the room's archive, oldest first,
        paging back."""
        found: list[Archived] = []
        before = None
        while len(found) < max(count, 1):
            results, complete = await self.page(
                send_iq, room, newest=max(count, 1) - len(found), before=before
            )
            found[:0] = results
            if complete or not results:
                break
            before = results[0].id
        return found

    async def catch_up(self, send_iq: Any, room: str, handle: Any, history_on_link: int = 0) -> int:
        """Hand every archived message after the handled position to ``handle(archived)``,
        oldest first, page by page; the number handed. A room never caught up before
        (just linked) hands its newest ``history_on_link`` messages, marked as history,
        and its position becomes its newest message (or the archive's start, ``""``,
        when it has none yet)."""
        after = await self.position(room)
        if after is None:
            recent = await self.newest(send_iq, room, history_on_link)
            shown = recent[-history_on_link:] if history_on_link else []
            for archived in shown:
                archived.history = True
                handle(archived)
            await self.handled(room, recent[-1].id if recent else "")
            return len(shown)
        count = 0
        while True:
            try:
                results, complete = await self.page(send_iq, room, after=after)
            except LookupError:
                log.warning(
                    "the room's archive no longer has the last message the bridge handled "
                    "(the bridge was away longer than the archive keeps messages): what "
                    "was said in between is lost",
                    room=room,
                )
                recent = await self.newest(send_iq, room, 1)
                await self.handled(room, recent[-1].id if recent else "")
                return count
            for archived in results:
                handle(archived)
                count += 1
            if complete or not results:
                return count
            after = results[-1].id
            await asyncio.sleep(0)
