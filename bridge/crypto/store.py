"""Durable crypto state in the bridge's database (SQLite or PostgreSQL): what
:class:`~anywhere.bridge.crypto.machine.OlmMachine` keeps. Pickles are encrypted by vodozemac with
the pickle key; no key material is ever logged."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
import vodozemac
from mautrix.util.async_db import Database

from ..errors import AnywhereError

log = structlog.get_logger("anywhere.crypto")

#: Room keys and replay-protection entries kept in memory, at most (by session).
MEMORY_LIMIT = 2000


def now_ms() -> int:
    return int(time.time() * 1000)


class CryptoStore:
    def __init__(self, db: Database, pickle_key: bytes) -> None:
        self.db = db
        self.key = pickle_key
        # Read on every encrypted event, so kept in memory (bounded): room keys by session
        # id, and the message indexes each session's events used (replay protection),
        # whose new entries are written in batches (flush_claims).
        self._inbound: dict[str, tuple[vodozemac.InboundGroupSession, str, str, str]] = {}
        self._claims: dict[str, dict[int, str]] = {}
        self._unsaved_claims: list[tuple[str, int, str]] = []

    # ----- the bot's account -----
    async def load_account(self, user_id: str) -> tuple[str, vodozemac.Account, bool] | None:
        row = await self.db.fetchrow(
            "SELECT device_id, pickle, shared FROM crypto_account WHERE user_id = $1", user_id
        )
        if row is None:
            return None
        try:
            account = vodozemac.Account.from_pickle(row["pickle"], self.key)
        except vodozemac.PickleException:
            raise AnywhereError(
                "the bot's stored encryption account cannot be read with "
                "encryption.pickle_key (was the key changed?): put the old key back, or reset "
                "the bot's device as docs/encryption.md says; refusing to start rather than "
                "make a new identity"
            ) from None
        return row["device_id"], account, bool(row["shared"])

    async def account_users(self) -> list[str]:
        """The user ids of every stored account (the bot and the bridge's other identities)."""
        return [r["user_id"] for r in await self.db.fetch("SELECT user_id FROM crypto_account")]

    async def save_account(
        self,
        user_id: str,
        device_id: str,
        account: vodozemac.Account,
        shared: bool,
        conn: Any = None,
    ) -> None:
        await (conn or self.db).execute(
            "INSERT INTO crypto_account (user_id, device_id, pickle, shared) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET "
            "device_id = excluded.device_id, pickle = excluded.pickle, shared = excluded.shared",
            user_id,
            device_id,
            account.pickle(self.key),
            shared,
        )

    # ----- Olm sessions (each of the bridge's identities, ``owner``, has its own) -----
    async def olm_sessions(self, owner: str, sender_key: str) -> list[vodozemac.Session]:
        rows = await self.db.fetch(
            "SELECT pickle FROM crypto_olm_session WHERE owner = $1 AND sender_key = $2 "
            "ORDER BY last_used DESC",
            owner,
            sender_key,
        )
        return [vodozemac.Session.from_pickle(r["pickle"], self.key) for r in rows]

    async def save_olm_session(
        self, owner: str, sender_key: str, session: vodozemac.Session, conn: Any = None
    ) -> None:
        await (conn or self.db).execute(
            "INSERT INTO crypto_olm_session (owner, sender_key, session_id, pickle, last_used) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, sender_key, session_id) DO UPDATE "
            "SET pickle = excluded.pickle, last_used = excluded.last_used",
            owner,
            sender_key,
            session.session_id,
            session.pickle(self.key),
            now_ms(),
        )

    # ----- Megolm inbound -----
    async def save_inbound(
        self,
        room_id: str,
        sender_key: str,
        signing_key: str,
        session: vodozemac.InboundGroupSession,
        conn: Any = None,
    ) -> bool:
        """Store a room key; False when one as good (same or earlier first index) is kept."""
        known = await self.inbound(session.session_id, conn)
        if known is not None and (known[1], known[2]) != (room_id, sender_key):
            # a key for a session already known from another room or sender: a member
            # forwarding a made-up key under someone else's session id would make that
            # person's messages undecryptable for the bot
            log.warning(
                "room key refused: its session is known from another room or sender",
                room_id=room_id,
                session_id=session.session_id,
            )
            return False
        if known is not None and known[0].first_known_index <= session.first_known_index:
            return False
        self._inbound.pop(session.session_id, None)
        await (conn or self.db).execute(
            "INSERT INTO crypto_megolm_inbound (session_id, room_id, sender_key, signing_key, "
            "pickle) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET "
            "pickle = excluded.pickle",
            session.session_id,
            room_id,
            sender_key,
            signing_key,
            session.pickle(self.key),
        )
        return True

    async def inbound(
        self, session_id: str, conn: Any = None
    ) -> tuple[vodozemac.InboundGroupSession, str, str, str] | None:
        """(session, room_id, sender_key, signing_key)"""
        if conn is None and session_id in self._inbound:
            return self._inbound[session_id]
        row = await (conn or self.db).fetchrow(
            "SELECT room_id, sender_key, signing_key, pickle FROM crypto_megolm_inbound "
            "WHERE session_id = $1",
            session_id,
        )
        if row is None:
            return None
        session = vodozemac.InboundGroupSession.from_pickle(row["pickle"], self.key)
        known = session, row["room_id"], row["sender_key"], row["signing_key"]
        if conn is None:
            if len(self._inbound) >= MEMORY_LIMIT:
                self._inbound.clear()
            self._inbound[session_id] = known
        return known

    async def claim_message_index(self, session_id: str, index: int, event_id: str) -> bool:
        """False when another event already used this session's message index (a replay).
        New claims are written by :meth:`flush_claims`, which the encryption calls before
        the inbox saves its position and before an event kept for its key is let go: a
        crash loses only claims of events that are handled again after it."""
        claims = self._claims.get(session_id)
        if claims is None:
            rows = await self.db.fetch(
                "SELECT message_index, event_id FROM crypto_megolm_index WHERE session_id = $1",
                session_id,
            )
            if len(self._claims) >= MEMORY_LIMIT:
                await self.flush_claims()
                self._claims.clear()
            claims = self._claims[session_id] = {r["message_index"]: r["event_id"] for r in rows}
        owner = claims.get(index)
        if owner is None:
            claims[index] = owner = event_id
            self._unsaved_claims.append((session_id, index, event_id))
        return owner == event_id

    async def flush_claims(self) -> None:
        if not self._unsaved_claims:
            return
        claims, self._unsaved_claims = self._unsaved_claims, []
        try:
            async with self.db.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO crypto_megolm_index (session_id, message_index, event_id) "
                    "VALUES ($1, $2, $3) ON CONFLICT (session_id, message_index) DO NOTHING",
                    claims,
                )
        except BaseException:
            self._unsaved_claims[:0] = claims  # written with the next flush
            raise

    # ----- Megolm outbound (one per identity, ``owner``, and room) -----
    async def outbound(self, owner: str, room_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT session_id, pickle, created_at, messages, shared_with "
            "FROM crypto_megolm_outbound WHERE owner = $1 AND room_id = $2",
            owner,
            room_id,
        )
        if row is None:
            return None
        return {
            "session": vodozemac.GroupSession.from_pickle(row["pickle"], self.key),
            "created_at": row["created_at"],
            "messages": row["messages"],
            "shared_with": {tuple(d) for d in json.loads(row["shared_with"])},
        }

    async def save_outbound(self, owner: str, room_id: str, state: dict[str, Any]) -> None:
        session: vodozemac.GroupSession = state["session"]
        await self.db.execute(
            "INSERT INTO crypto_megolm_outbound (owner, room_id, session_id, pickle, "
            "created_at, messages, shared_with) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (owner, room_id) DO UPDATE SET session_id = excluded.session_id, "
            "pickle = excluded.pickle, created_at = excluded.created_at, "
            "messages = excluded.messages, shared_with = excluded.shared_with",
            owner,
            room_id,
            session.session_id,
            session.pickle(self.key),
            state["created_at"],
            state["messages"],
            json.dumps(sorted(state["shared_with"])),
        )

    async def discard_outbound(self, room_id: str) -> None:
        """Every identity's session for the room (a member left: none may read on)."""
        await self.db.execute("DELETE FROM crypto_megolm_outbound WHERE room_id = $1", room_id)

    # ----- devices -----
    async def devices(self, user_id: str) -> dict[str, tuple[str, str]]:
        """{device_id: (curve25519, ed25519)}"""
        rows = await self.db.fetch(
            "SELECT device_id, curve25519, ed25519 FROM crypto_device WHERE user_id = $1",
            user_id,
        )
        return {r["device_id"]: (r["curve25519"], r["ed25519"]) for r in rows}

    async def device_by_curve(self, user_id: str, curve25519: str) -> tuple[str, str] | None:
        """(device_id, ed25519) of ``user_id``'s device with this identity key."""
        row = await self.db.fetchrow(
            "SELECT device_id, ed25519 FROM crypto_device WHERE user_id = $1 AND curve25519 = $2",
            user_id,
            curve25519,
        )
        return (row["device_id"], row["ed25519"]) if row else None

    async def replace_devices(self, user_id: str, devices: dict[str, tuple[str, str]]) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM crypto_device WHERE user_id = $1", user_id)
            for device_id, (curve, ed) in devices.items():
                await conn.execute(
                    "INSERT INTO crypto_device (user_id, device_id, curve25519, ed25519) "
                    "VALUES ($1, $2, $3, $4)",
                    user_id,
                    device_id,
                    curve,
                    ed,
                )
            await conn.execute(
                "INSERT INTO crypto_tracked_user (user_id, outdated) VALUES ($1, FALSE) "
                "ON CONFLICT (user_id) DO UPDATE SET outdated = FALSE",
                user_id,
            )

    async def outdated_users(self, user_ids: list[str]) -> list[str]:
        """Of ``user_ids``, those never queried or whose device list changed since."""
        fresh = {
            r["user_id"]
            for r in await self.db.fetch(
                "SELECT user_id FROM crypto_tracked_user WHERE NOT outdated"
            )
        }
        return [u for u in user_ids if u not in fresh]

    async def mark_outdated(self, user_ids: list[str]) -> None:
        for user_id in user_ids:
            await self.db.execute(
                "UPDATE crypto_tracked_user SET outdated = TRUE WHERE user_id = $1", user_id
            )

    # ----- events waiting for their room key -----
    async def wait(self, room_id: str, session_id: str | None, txn_id: str, event: dict) -> None:
        await self.db.execute(
            "INSERT INTO crypto_waiting (room_id, session_id, txn_id, event, waiting_since) "
            "VALUES ($1, $2, $3, $4, $5)",
            room_id,
            session_id,
            txn_id,
            json.dumps(event),
            now_ms(),
        )

    async def wait_again(self) -> None:
        """Events kept from before a restart wait their full time again, from now: no
        room key could reach the bridge while it was down."""
        await self.db.execute("UPDATE crypto_waiting SET waiting_since = $1", now_ms())

    async def waiting_rooms(self) -> set[str]:
        return {r["room_id"] for r in await self.db.fetch("SELECT room_id FROM crypto_waiting")}

    async def waiting_in(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT seq, session_id, txn_id, event, waiting_since FROM crypto_waiting "
            "WHERE room_id = $1 ORDER BY seq",
            room_id,
        )
        return [dict(r) | {"event": json.loads(r["event"])} for r in rows]

    async def rooms_waiting_for(self, session_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM crypto_waiting WHERE session_id = $1", session_id
        )
        return [r["room_id"] for r in rows]

    async def done_waiting(self, seq: int) -> None:
        await self.db.execute("DELETE FROM crypto_waiting WHERE seq = $1", seq)
