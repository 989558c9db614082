"""WebDAV locks and dead properties, kept in the bridge's database so that a restarted
bridge, or a second bridge host on the same database, knows them.

Locks are on URLs (RFC 4918 section 6): a shared folder's id and the path inside it, by
the names' collision key (``Docs/A.txt`` and ``docs/a.txt`` are one resource). Dead
properties are on the file or folder itself (its node id), so they follow a rename or a
move and come back with a restore from the trash."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from mautrix.util.async_db import Database

from ..model import now_ms
from ..names import name_key

MAX_LOCK_SECONDS = 3600
DEFAULT_LOCK_SECONDS = 600


def path_key(parts: list[str]) -> str:
    return "/".join(name_key(p) for p in parts)


@dataclass(frozen=True)
class Lock:
    token: str
    folder_id: str
    path: str  # as the lock was asked for (its lockroot)
    path_key: str
    depth_infinity: bool
    exclusive: bool
    owner_xml: str | None
    user_id: str
    timeout_seconds: int
    expires_at: int

    def covers(self, key: str) -> bool:
        """Whether this lock applies to the resource at ``key`` (same folder)."""
        if key == self.path_key:
            return True
        return self.depth_infinity and (self.path_key == "" or key.startswith(self.path_key + "/"))

    def is_below(self, key: str) -> bool:
        """Whether this lock is on something inside the collection at ``key``."""
        return key == "" or self.path_key.startswith(key + "/")

    @classmethod
    def from_row(cls, row) -> Lock:
        return cls(
            row["token"],
            row["folder_id"],
            row["path"],
            row["path_key"],
            bool(row["depth_infinity"]),
            bool(row["exclusive"]),
            row["owner_xml"],
            row["user_id"],
            int(row["timeout_seconds"]),
            int(row["expires_at"]),
        )


def clamp_timeout(header: str | None) -> int:
    """Seconds from a Timeout header (``Second-600``, ``Infinite``), at most an hour."""
    for part in (header or "").split(","):
        part = part.strip()
        if part.lower() == "infinite":
            return MAX_LOCK_SECONDS
        if part.lower().startswith("second-") and part[7:].isdigit():
            return max(1, min(int(part[7:]), MAX_LOCK_SECONDS))
    return DEFAULT_LOCK_SECONDS


class DavLocks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def in_folder(self, folder_id: str) -> list[Lock]:
        """The folder's live locks (expired ones are deleted on the way)."""
        now = now_ms()
        await self.db.execute(
            "DELETE FROM drive_dav_lock WHERE folder_id = $1 AND expires_at < $2", folder_id, now
        )
        rows = await self.db.fetch(
            "SELECT * FROM drive_dav_lock WHERE folder_id = $1 ORDER BY token", folder_id
        )
        return [Lock.from_row(r) for r in rows]

    async def create(
        self,
        folder_id: str,
        path: str,
        key: str,
        *,
        depth_infinity: bool,
        exclusive: bool,
        owner_xml: str | None,
        user_id: str,
        timeout_seconds: int,
    ) -> Lock:
        token = f"urn:uuid:{_uuid()}"
        await self.db.execute(
            "INSERT INTO drive_dav_lock (token, folder_id, path, path_key, depth_infinity, "
            "exclusive, owner_xml, user_id, timeout_seconds, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            token,
            folder_id,
            path,
            key,
            depth_infinity,
            exclusive,
            owner_xml,
            user_id,
            timeout_seconds,
            now_ms() + timeout_seconds * 1000,
        )
        return await self.get(token)

    async def get(self, token: str) -> Lock | None:
        row = await self.db.fetchrow(
            "SELECT * FROM drive_dav_lock WHERE token = $1 AND expires_at >= $2", token, now_ms()
        )
        return Lock.from_row(row) if row else None

    async def refresh(self, lock: Lock, timeout_seconds: int) -> Lock:
        await self.db.execute(
            "UPDATE drive_dav_lock SET timeout_seconds = $2, expires_at = $3 WHERE token = $1",
            lock.token,
            timeout_seconds,
            now_ms() + timeout_seconds * 1000,
        )
        return await self.get(lock.token)

    async def remove(self, token: str) -> None:
        await self.db.execute("DELETE FROM drive_dav_lock WHERE token = $1", token)

    async def remove_at(self, folder_id: str, key: str) -> None:
        """Remove the locks on ``key`` and on anything below it (it was deleted or moved
        away: locks do not move with a resource)."""
        for lock in await self.in_folder(folder_id):
            if lock.path_key == key or lock.is_below(key):
                await self.remove(lock.token)


def _uuid() -> str:
    import uuid

    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


class DeadProperties:
    """Properties a client set with PROPPATCH, each kept as its XML element text."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def of(self, node_id: str) -> dict[tuple[str, str], str]:
        rows = await self.db.fetch(
            "SELECT namespace, name, value_xml FROM drive_dav_property WHERE node_id = $1 "
            "ORDER BY namespace, name",
            node_id,
        )
        return {(r["namespace"], r["name"]): r["value_xml"] for r in rows}

    async def apply(self, node_id: str, changes: list[tuple[str, str, str | None]]) -> None:
        """Set (value XML) or remove (None) properties, all in one transaction."""
        async with self.db.acquire() as conn, conn.transaction():
            for namespace, name, value in changes:
                await conn.execute(
                    "DELETE FROM drive_dav_property WHERE node_id = $1 AND namespace = $2 "
                    "AND name = $3",
                    node_id,
                    namespace,
                    name,
                )
                if value is not None:
                    await conn.execute(
                        "INSERT INTO drive_dav_property (node_id, namespace, name, value_xml) "
                        "VALUES ($1, $2, $3, $4)",
                        node_id,
                        namespace,
                        name,
                        value,
                    )

    async def copy(self, source_id: str, target_id: str) -> None:
        props = await self.of(source_id)
        await self.apply(target_id, [(ns, n, v) for (ns, n), v in props.items()])
