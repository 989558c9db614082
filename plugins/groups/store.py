"""The portal store: the portals (``groups_portal``, kept in memory too) and the message
map (``groups_message``: which network ID is which Matrix event, who wrote it, and the
reactions). The only object that reads or writes those tables."""

from __future__ import annotations

import json
from typing import Any

from . import convert
from .connector import DIRECT, GROUP, Portal
from .limits import address_and_domain


class PortalStore:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._by_room: dict[str, Portal] = {}
        # (network, remote_id, matrix_user) → portal, and how many direct portals each
        # (network, remote address) and (network, remote domain) has
        self._by_remote: dict[tuple[str, str, str | None], Portal] = {}
        self._direct_counts: dict[tuple[str, str], int] = {}

    # ----- portals -----
    async def load(self) -> None:
        for row in await self.db.fetch(
            "SELECT network, remote_id, kind, room_id, matrix_user FROM groups_portal"
        ):
            self._remember(Portal(**dict(row)))

    def portals(self, network: str | None = None) -> list[Portal]:
        return [p for p in self._by_room.values() if network is None or p.network == network]

    def for_room(self, room_id: str) -> Portal | None:
        return self._by_room.get(room_id)

    def for_remote(
        self, network: str, remote_id: str, matrix_user: str | None = None
    ) -> Portal | None:
        return self._by_remote.get((network, remote_id, matrix_user))

    def direct_counts(self, network: str, remote_id: str) -> tuple[int, int]:
        """How many direct portals the remote address, and its domain, have."""
        address, domain = self._direct_keys(network, remote_id)
        return self._direct_counts.get(address, 0), self._direct_counts.get(domain, 0)

    async def save(self, portal: Portal) -> None:
        key = (
            portal.remote_id if portal.kind == GROUP else f"{portal.remote_id}|{portal.matrix_user}"
        )
        await self.db.execute(
            "INSERT INTO groups_portal (network, portal_key, remote_id, kind, room_id, "
            "matrix_user) VALUES ($1, $2, $3, $4, $5, $6)",
            portal.network,
            key,
            portal.remote_id,
            portal.kind,
            portal.room_id,
            portal.matrix_user,
        )
        self._remember(portal)

    async def delete(self, portal: Portal) -> None:
        await self.db.execute("DELETE FROM groups_portal WHERE room_id = $1", portal.room_id)
        self._by_room.pop(portal.room_id, None)
        self._by_remote.pop((portal.network, portal.remote_id, portal.matrix_user), None)
        if portal.kind == DIRECT:
            for key in self._direct_keys(portal.network, portal.remote_id):
                self._direct_counts[key] -= 1

    def _remember(self, portal: Portal) -> None:
        self._by_room[portal.room_id] = portal
        self._by_remote[(portal.network, portal.remote_id, portal.matrix_user)] = portal
        if portal.kind == DIRECT:
            for key in self._direct_keys(portal.network, portal.remote_id):
                self._direct_counts[key] = self._direct_counts.get(key, 0) + 1

    @staticmethod
    def _direct_keys(network: str, remote_id: str) -> list[tuple[str, str]]:
        address, domain = address_and_domain(remote_id)
        return [(network, "address " + address), (network, "domain " + domain)]

    # ----- the message map -----
    async def known(self, network: str, remote_id: str) -> bool:
        """Whether the network ID ``remote_id`` is mapped (relayed, or an echo of ours)."""
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM groups_message WHERE network = $1 AND remote_id = $2",
                network,
                remote_id,
            )
        )

    async def event_for(self, network: str, remote_id: str) -> tuple[str, str] | None:
        """``(room_id, event_id)`` of the network's ``remote_id``, or None."""
        row = await self.db.fetchrow(
            "SELECT room_id, event_id FROM groups_message WHERE network = $1 AND remote_id = $2",
            network,
            remote_id,
        )
        return (row["room_id"], row["event_id"]) if row else None

    async def remote_for(self, event_id: str) -> tuple[str, str] | None:
        """``(network, remote_id)`` of the Matrix ``event_id``, or None."""
        row = await self.db.fetchrow(
            "SELECT network, remote_id FROM groups_message WHERE event_id = $1 "
            "ORDER BY origin LIMIT 1",
            event_id,
        )
        return (row["network"], row["remote_id"]) if row else None

    async def remote_from_network(self, network: str, event_id: str) -> str | None:
        """The network ID of ``event_id`` when that event came from the network."""
        return await self.db.fetchval(
            "SELECT remote_id FROM groups_message WHERE network = $1 AND event_id = $2 "
            "AND origin = 'remote'",
            network,
            event_id,
        )

    async def map(
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
        await self.db.execute(
            "INSERT INTO groups_message (network, remote_id, room_id, event_id, origin, sender) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (network, remote_id) DO NOTHING",
            network,
            remote_id,
            room_id,
            event_id,
            origin,
            sender,
        )

    async def unmap(self, network: str, remote_id: str) -> None:
        await self.db.execute(
            "DELETE FROM groups_message WHERE network = $1 AND remote_id = $2",
            network,
            remote_id,
        )

    async def by_remote_author(self, network: str, remote_id: str, author: str) -> bool:
        """Whether the network's message ``remote_id`` came from the network, from
        ``author`` (a Matrix person's message never is)."""
        row = await self.db.fetchrow(
            "SELECT origin, sender FROM groups_message WHERE network = $1 AND remote_id = $2",
            network,
            remote_id,
        )
        return row is not None and row["origin"] == "remote" and row["sender"] == author

    async def written_by(self, event_id: str, user_id: str) -> bool:
        """Whether the mapped message ``event_id`` came from Matrix, from ``user_id``
        (messages mapped before authors were kept count as theirs)."""
        row = await self.db.fetchrow(
            "SELECT origin, sender FROM groups_message WHERE event_id = $1 ORDER BY origin LIMIT 1",
            event_id,
        )
        return row is not None and row["origin"] == "matrix" and row["sender"] in (None, user_id)

    async def reactions(self, network: str, target: str, who: str) -> dict[str, tuple[str, str]]:
        """``key → (map ID, event ID)`` of one person's reactions to ``target``."""
        prefix = convert.reaction_prefix(target, who)
        rows = await self.db.fetch(
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
