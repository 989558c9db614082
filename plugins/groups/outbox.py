"""Matrix → network: the durable outbox of each network, sent in order, once.

Events for portal rooms are queued in ``groups_outbox`` when they arrive (see
``Hub.on_matrix_event``, which calls :meth:`Outbox.enqueue`); one worker per network sends
them through its connector, keeps them while the network is away, and tells the sender
when the network refuses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mautrix.types import EventType

from anywhere.bridge import EventContext, MatrixEvent, MediaError

from . import convert
from .connector import (
    Connector,
    EditHandling,
    FileHandling,
    LocationHandling,
    MatrixSender,
    NetworkUnavailable,
    Portal,
    ReactionHandling,
    RedactionHandling,
    Refused,
)

if TYPE_CHECKING:
    from .people import MatrixPeople
    from .store import PortalStore

RETRY_SECONDS = 1.0


class Outbox:
    """The queue (``groups_outbox``) and one wake-up per network; events go out through
    ``connectors`` (network → connector, filled by the hub as they start), as Matrix
    people of ``people``, and notices to the sender through ``room_intent(room_id)``."""

    def __init__(
        self,
        bridge: Any,
        store: PortalStore,
        connectors: dict[str, Connector],
        people: MatrixPeople,
        room_intent: Callable[[str], Any],
        log: Any,
    ) -> None:
        self.bridge = bridge
        self.store = store
        self.connectors = connectors
        self.people = people
        self.room_intent = room_intent
        self.log = log
        self._wake: dict[str, asyncio.Event] = {}

    def wake(self, network: str) -> None:
        """Something may be sent to ``network`` now (queued, or the network came back)."""
        if network in self._wake:
            self._wake[network].set()

    async def enqueue(self, event: MatrixEvent, network: str) -> None:
        """Keep ``event`` (of a portal room of ``network``) until it is sent, once."""
        await self.bridge.db.execute(
            "INSERT INTO groups_outbox (event_id, room_id, event) VALUES ($1, $2, $3) "
            "ON CONFLICT (event_id) DO NOTHING",
            event.event_id,
            event.room_id,
            json.dumps(event.raw),
        )
        self.wake(network)

    async def run(self, network: str) -> None:
        """Send the outbox of one network in order; it never gives up on the network, and
        one bad event never stops the rest."""
        wake = self._wake.setdefault(network, asyncio.Event())
        while True:
            try:
                row = await self.bridge.db.fetchrow(
                    "SELECT o.seq, o.event FROM groups_outbox o JOIN groups_portal p "
                    "ON p.room_id = o.room_id WHERE p.network = $1 ORDER BY o.seq LIMIT 1",
                    network,
                )
                if row is None:
                    wake.clear()
                    await wake.wait()
                    continue
                if await self._send_one(network, MatrixEvent(json.loads(row["event"]))):
                    await self.bridge.db.execute(
                        "DELETE FROM groups_outbox WHERE seq = $1", row["seq"]
                    )
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("the outbox worker stumbled; retrying", network=network)
            wake.clear()
            # Not asyncio.wait_for: on Python 3.11 it drops a cancellation (the hub
            # stopping) that arrives as the wake-up does, and the worker would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_SECONDS):
                    await wake.wait()

    async def _send_one(self, network: str, event: MatrixEvent) -> bool:
        """Deliver one event; False to keep it for later (the network is away)."""
        try:
            await self._deliver(network, event)
        except NetworkUnavailable as exc:
            self.log.info("network unavailable, will retry", network=network, error=str(exc))
            return False
        except Refused as exc:
            await self.tell(event, f"Not sent to {network}: {exc}")
        except Exception:
            self.log.exception("relaying a Matrix event failed", event_id=event.event_id)
            await self.tell(
                event,
                f"Not sent to {network} because of an error; the operator can find it in "
                f"the logs (event {event.event_id}).",
            )
        return True

    async def tell(self, event: MatrixEvent, text: str) -> None:
        content = {
            "msgtype": "m.notice",
            "body": text,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        }
        txn_id = EventContext(self.bridge, event, "groups").next_txn_id()
        try:
            await self.room_intent(event.room_id).send_message_event(
                event.room_id, EventType.ROOM_MESSAGE, content, txn_id=txn_id
            )
        except Exception as exc:
            self.log.warning("could not tell the sender", event_id=event.event_id, error=str(exc))

    async def _file_bytes(self, content: dict) -> bytes:
        """A file message's plain bytes (decrypted in encrypted rooms, its hash checked);
        a file that cannot be opened is refused saying why."""
        chunks: list[bytes] = []
        try:
            async for chunk in self.bridge.media.download_content(content):
                chunks.append(chunk)
        except MediaError as exc:
            if exc.temporary:
                raise NetworkUnavailable(f"the homeserver did not give the file: {exc}") from exc
            raise Refused(str(exc)) from exc
        return b"".join(chunks)

    async def _deliver(self, network: str, event: MatrixEvent) -> None:
        portal = self.store.for_room(event.room_id)
        connector = self.connectors[network]
        if portal is None:
            return  # unlinked meanwhile
        sender = await self.people.sender(event.room_id, event.sender)
        content = event.content
        if event.type == "m.reaction":
            await self._deliver_reaction(portal, connector, sender, event)
            return
        if event.type == "m.room.redaction":
            target = event.raw.get("redacts") or content.get("redacts")
            remote = await self.store.remote_for(str(target))
            if remote and remote[1].startswith("reaction "):
                await self._deliver_unreaction(portal, connector, sender, remote[1])
            elif remote and isinstance(connector, RedactionHandling):
                remote_id = await connector.handle_matrix_redaction(
                    portal, sender, remote[1], event.event_id
                )
                if remote_id:  # the retraction's own ID: its echo is recognised
                    await self.store.map(
                        network, remote_id, event.room_id, event.event_id, "matrix", event.sender
                    )
            return
        message = convert.matrix_to_message(event.event_id, content)
        reply_event = convert.reply_target(content)
        if reply_event:
            remote = await self.store.remote_for(reply_event)
            message.reply_to = remote[1] if remote else None
        edited = convert.edit_target(content)
        msgtype = (content.get("m.new_content") or content).get("msgtype")
        if edited:
            remote = await self.store.remote_for(edited)
            if remote is None or not isinstance(connector, EditHandling):
                return
            if not await self.store.written_by(edited, event.sender):
                return  # only its author corrects a message
            remote_id = await connector.handle_matrix_edit(portal, sender, remote[1], message)
        elif msgtype in convert.FILE_MSGTYPES:
            if not isinstance(connector, FileHandling):
                raise Refused(f"{network} connector does not carry files")
            url = content.get("url")
            if not isinstance(content.get("file"), dict) and not (
                isinstance(url, str) and url.startswith("mxc://")
            ):
                raise Refused("the file has no media URL")
            data = await self._file_bytes(content)
            message = convert.file_message(event.event_id, content, data)
            remote_id = await connector.handle_matrix_file(portal, sender, message)
        elif msgtype == "m.location":
            if message.location is None:
                raise Refused("the location has no valid geo: URI")
            if isinstance(connector, LocationHandling):
                remote_id = await connector.handle_matrix_location(portal, sender, message)
            else:
                message.text = f"{message.text} {message.location.geo_uri}".strip()
                remote_id = await connector.handle_matrix_message(portal, sender, message)
        else:
            remote_id = await connector.handle_matrix_message(portal, sender, message)
        await self.store.map(
            network, remote_id, event.room_id, event.event_id, "matrix", event.sender
        )

    async def _deliver_reaction(
        self, portal: Portal, connector: Connector, sender: MatrixSender, event: MatrixEvent
    ) -> None:
        relates = event.content.get("m.relates_to") or {}
        key = relates.get("key")
        if relates.get("rel_type") != "m.annotation" or not isinstance(key, str) or not key:
            return
        remote = await self.store.remote_for(str(relates.get("event_id")))
        if (
            remote is None
            or remote[1].startswith("reaction ")
            or not isinstance(connector, ReactionHandling)
        ):
            return
        target, who = remote[1], f"m:{sender.user_id}"
        have = await self.store.reactions(portal.network, target, who)
        if key in have:
            return
        await connector.handle_matrix_reaction(portal, sender, target, [*have, key])
        map_id = convert.reaction_id(target, who, key)
        await self.store.map(
            portal.network, map_id, event.room_id, event.event_id, "matrix", event.sender
        )

    async def _deliver_unreaction(
        self, portal: Portal, connector: Connector, sender: MatrixSender, map_id: str
    ) -> None:
        """A Matrix person redacted one of their reactions: the network gets the rest."""
        target, who, key = convert.parse_reaction_id(map_id)
        if who != f"m:{sender.user_id}" or not isinstance(connector, ReactionHandling):
            return
        have = await self.store.reactions(portal.network, target, who)
        have.pop(key, None)
        await connector.handle_matrix_reaction(portal, sender, target, list(have))
        await self.store.unmap(portal.network, map_id)
