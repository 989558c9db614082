"""Folders and who may use them: owners, invitations, acceptance, roles.

An invitation gives no access at all until it is accepted (the person joins the
folder's room); declining, leaving and revocation end it. Only the owner shares.
"""

from __future__ import annotations

from mautrix.util.async_db import Database

from .errors import Conflict, Denied, DriveError, NotFound
from .model import ACTIVE, ROLES, WRITE_ROLES, Folder, Member, new_id, now_ms
from .names import check_name, name_key

FOLDER_COLUMNS = "id, owner, name, root_id, room_id"
MEMBER_COLUMNS = "folder_id, user_id, role, state, invited_by"


class Access:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----- folders -----
    async def check_new_folder(self, owner: str, name: str) -> str:
        """The checked name for a new folder of ``owner`` (refused when taken)."""
        name = check_name(name)
        taken = await self.db.fetchval(
            "SELECT name FROM drive_folder WHERE owner = $1 AND name_key = $2",
            owner,
            name_key(name),
        )
        if taken:
            raise Conflict(f"you already have a folder named {taken!r}")
        return name

    async def create_folder(self, owner: str, name: str, room_id: str | None = None) -> Folder:
        name = await self.check_new_folder(owner, name)
        key = name_key(name)
        folder = Folder(new_id(), owner, name, new_id(), room_id)
        now = now_ms()
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO drive_folder (id, owner, name, name_key, root_id, room_id, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                folder.id,
                owner,
                name,
                key,
                folder.root_id,
                room_id,
                now,
            )
            await conn.execute(
                "INSERT INTO drive_node (id, folder_id, parent_id, name, name_key, kind, "
                "revision, updated_at, updated_by) VALUES ($1, $2, NULL, $3, $4, 'dir', 1, $5, $6)",
                folder.root_id,
                folder.id,
                name,
                key,
                now,
                owner,
            )
            await conn.execute(
                "INSERT INTO drive_member (folder_id, user_id, role, state, invited_by, "
                "updated_at) VALUES ($1, $2, 'owner', 'joined', NULL, $3)",
                folder.id,
                owner,
                now,
            )
        return folder

    async def set_room(self, folder: Folder, room_id: str) -> Folder:
        await self.db.execute(
            "UPDATE drive_folder SET room_id = $2 WHERE id = $1", folder.id, room_id
        )
        return Folder(folder.id, folder.owner, folder.name, folder.root_id, room_id)

    async def folder(self, folder_id: str) -> Folder:
        row = await self.db.fetchrow(
            f"SELECT {FOLDER_COLUMNS} FROM drive_folder WHERE id = $1", folder_id
        )
        if row is None:
            raise NotFound(f"no folder with id {folder_id}")
        return Folder.from_row(row)

    async def folder_for_room(self, room_id: str) -> Folder | None:
        row = await self.db.fetchrow(
            f"SELECT {FOLDER_COLUMNS} FROM drive_folder WHERE room_id = $1", room_id
        )
        return Folder.from_row(row) if row else None

    async def folders_of(self, user_id: str) -> list[tuple[Folder, Member]]:
        """Folders ``user_id`` owns, has accepted, or is invited to (oldest first)."""
        rows = await self.db.fetch(
            "SELECT f.id, f.owner, f.name, f.root_id, f.room_id, m.folder_id, m.user_id, "
            "m.role, m.state, m.invited_by FROM drive_folder f JOIN drive_member m "
            "ON m.folder_id = f.id WHERE m.user_id = $1 AND m.state IN ('joined', 'invited') "
            "ORDER BY f.created_at, f.id",
            user_id,
        )
        return [(Folder.from_row(r), Member.from_row(r)) for r in rows]

    async def find_folder(self, user_id: str, ref: str) -> Folder:
        """A folder by id, or by name among the folders ``user_id`` belongs to."""
        candidates = await self.folders_of(user_id)
        for folder, _ in candidates:
            if folder.id == ref:
                return folder
        key = name_key(ref)
        named = [f for f, _ in candidates if name_key(f.name) == key]
        own = [f for f in named if f.owner == user_id]
        if len(own) == 1:
            return own[0]
        if len(named) == 1:
            return named[0]
        if not named:
            raise NotFound(f"you have no folder named {ref!r}; see your folders with: ls")
        choices = ", ".join(f"{f.id} (owner {f.owner})" for f in named)
        raise DriveError(f"several folders are named {ref!r}; use an id: {choices}")

    # ----- members -----
    async def member(self, folder_id: str, user_id: str) -> Member | None:
        row = await self.db.fetchrow(
            f"SELECT {MEMBER_COLUMNS} FROM drive_member WHERE folder_id = $1 AND user_id = $2",
            folder_id,
            user_id,
        )
        return Member.from_row(row) if row else None

    async def members(self, folder_id: str) -> list[Member]:
        rows = await self.db.fetch(
            f"SELECT {MEMBER_COLUMNS} FROM drive_member WHERE folder_id = $1 ORDER BY updated_at",
            folder_id,
        )
        return [Member.from_row(r) for r in rows]

    async def require(self, folder: Folder, user_id: str, *, write: bool = False) -> str:
        """The person's role; :class:`Denied` (with what to do) without the access asked."""
        member = await self.member(folder.id, user_id)
        if member is None or member.state not in (ACTIVE, "invited"):
            raise Denied(f"you have no access to the folder {folder.name!r}")
        if member.state == "invited":
            raise Denied(
                f"you were invited to the folder {folder.name!r} but have not accepted yet: "
                "join the folder's room (accept the invite) to get access"
            )
        if write and member.role not in WRITE_ROLES:
            raise Denied(f"you are a viewer of {folder.name!r}: you can read but not change it")
        return member.role

    async def invite(self, folder: Folder, actor: str, user_id: str, role: str) -> Member:
        if actor != folder.owner:
            raise Denied(f"only the owner ({folder.owner}) can share {folder.name!r}")
        if role not in ROLES[1:]:
            raise DriveError(f"role must be editor or viewer, not {role!r}")
        if user_id == folder.owner:
            raise DriveError("you own this folder already")
        current = await self.member(folder.id, user_id)
        if current and current.state == ACTIVE:
            if current.role == role:
                raise Conflict(f"{user_id} already has {folder.name!r} as {role}")
            await self._set(folder.id, user_id, role=role)
        else:
            await self.db.execute(
                "INSERT INTO drive_member (folder_id, user_id, role, state, invited_by, "
                "updated_at) VALUES ($1, $2, $3, 'invited', $4, $5) "
                "ON CONFLICT (folder_id, user_id) DO UPDATE SET role = excluded.role, "
                "state = 'invited', invited_by = excluded.invited_by, "
                "updated_at = excluded.updated_at",
                folder.id,
                user_id,
                role,
                actor,
                now_ms(),
            )
        return await self.member(folder.id, user_id)

    async def revoke(self, folder: Folder, actor: str, user_id: str) -> Member:
        if actor != folder.owner:
            raise Denied(f"only the owner ({folder.owner}) can revoke access to {folder.name!r}")
        current = await self.member(folder.id, user_id)
        if current is None or current.state not in (ACTIVE, "invited") or current.role == "owner":
            raise NotFound(f"{user_id} has no share of {folder.name!r} to revoke")
        await self._set(folder.id, user_id, state="revoked")
        return await self.member(folder.id, user_id)

    async def membership_changed(self, folder: Folder, user_id: str, membership: str) -> str | None:
        """Apply a room membership change; returns the new share state, or None."""
        current = await self.member(folder.id, user_id)
        if current is None or current.role == "owner":
            return None
        if membership == "join" and current.state == "invited":
            new = ACTIVE
        elif membership == "leave" and current.state == "invited":
            new = "declined"
        elif membership in ("leave", "ban") and current.state == ACTIVE:
            new = "left"
        else:
            return None
        await self._set(folder.id, user_id, state=new)
        return new

    async def set_state(self, folder_id: str, user_id: str, state: str) -> None:
        await self._set(folder_id, user_id, state=state)

    async def _set(self, folder_id: str, user_id: str, **fields: str) -> None:
        for key, value in fields.items():
            assert key in ("role", "state")
            await self.db.execute(
                f"UPDATE drive_member SET {key} = $3, updated_at = $4 "
                "WHERE folder_id = $1 AND user_id = $2",
                folder_id,
                user_id,
                value,
                now_ms(),
            )
