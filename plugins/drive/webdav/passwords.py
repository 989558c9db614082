"""App passwords: what desktop WebDAV clients (Finder, Explorer, GNOME Files, davfs2,
rclone) sign in with, since they cannot do a Matrix login.

Each password is a random 256-bit secret, shown once when it is created. Only its
SHA-256 is stored: for a random secret of that size a fast hash is as safe as a slow KDF
(nobody can guess 2**256 values), and it keeps every WebDAV request cheap. A given
password is compared with each of the person's stored hashes in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from mautrix.util.async_db import Database

from ..errors import Conflict, DriveError, NotFound
from ..model import now_ms

PREFIX = "anyw_"
MAX_PASSWORDS = 50
MAX_NAME = 64
USE_NOTED_EVERY_MS = 60_000  # how precisely "last used" is kept


@dataclass(frozen=True)
class AppPassword:
    name: str
    created_at: int
    last_used_at: int | None

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "created_at": self.created_at, "last_used_at": self.last_used_at}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_password_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise DriveError(
            f"an app password needs a name of 1 to {MAX_NAME} printable characters that says "
            "where it is used (e.g. laptop-finder)"
        )
    return name


class AppPasswords:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, user_id: str, name: str) -> str:
        """A new password named ``name`` for ``user_id``; the only time it is seen."""
        name = check_password_name(name)
        count = await self.db.fetchval(
            "SELECT COUNT(*) FROM drive_app_password WHERE user_id = $1", user_id
        )
        if int(count or 0) >= MAX_PASSWORDS:
            raise DriveError(
                f"you have {MAX_PASSWORDS} app passwords already: revoke the ones you no "
                "longer use (!drive apppassword list, then revoke NAME)"
            )
        if await self._exists(user_id, name):
            raise Conflict(
                f"you have an app password named {name!r} already: choose another name, or "
                f"revoke it first (!drive apppassword revoke {name})"
            )
        secret = PREFIX + secrets.token_urlsafe(32)  # 256 random bits
        await self.db.execute(
            "INSERT INTO drive_app_password (user_id, name, secret_sha256, created_at) "
            "VALUES ($1, $2, $3, $4)",
            user_id,
            name,
            _digest(secret),
            now_ms(),
        )
        return secret

    async def list(self, user_id: str) -> list[AppPassword]:
        rows = await self.db.fetch(
            "SELECT name, created_at, last_used_at FROM drive_app_password WHERE user_id = $1 "
            "ORDER BY created_at, name",
            user_id,
        )
        return [AppPassword(r["name"], int(r["created_at"]), r["last_used_at"]) for r in rows]

    async def revoke(self, user_id: str, name: str) -> None:
        if not await self._exists(user_id, name):
            raise NotFound(
                f"you have no app password named {name!r}; see yours with !drive apppassword list"
            )
        await self.db.execute(
            "DELETE FROM drive_app_password WHERE user_id = $1 AND name = $2", user_id, name
        )

    async def verify(self, user_id: str, secret: str) -> bool:
        """Whether ``secret`` is one of ``user_id``'s app passwords (noting its use)."""
        given = _digest(secret)
        rows = await self.db.fetch(
            "SELECT name, secret_sha256, last_used_at FROM drive_app_password WHERE user_id = $1",
            user_id,
        )
        found = None
        for row in rows:  # every row compared, in constant time, whichever matches
            if hmac.compare_digest(given, row["secret_sha256"]):
                found = row
        if found is None:
            return False
        if (found["last_used_at"] or 0) > now_ms() - USE_NOTED_EVERY_MS:
            return True  # noted a moment ago: no write for every request of a sync
        await self.db.execute(
            "UPDATE drive_app_password SET last_used_at = $3 WHERE user_id = $1 AND name = $2",
            user_id,
            found["name"],
            now_ms(),
        )
        return True

    async def _exists(self, user_id: str, name: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM drive_app_password WHERE user_id = $1 AND name = $2",
                user_id,
                name,
            )
        )
