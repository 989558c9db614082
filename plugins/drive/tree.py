"""Files and folders inside a shared folder: lookup, listing, mkdir, move, trash,
restore, versions and the change feed. Only rows change here; content stays put in the
blob store. Every change bumps the node's revision and appends to the change feed."""

from __future__ import annotations

from typing import Any

from mautrix.util.async_db import Database

from .errors import Conflict, DriveError, NotFound, QuotaExceeded, StaleRevision
from .model import NODE_COLUMNS, Folder, Node, Version, human_size, new_id, now_ms
from .names import check_name, join_path, name_key


class Tree:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----- reading -----
    async def node(self, node_id: str) -> Node:
        row = await self.db.fetchrow(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE id = $1", node_id
        )
        if row is None:
            raise NotFound(f"no file or folder with id {node_id}")
        return Node.from_row(row)

    async def child(self, parent_id: str, name: str) -> Node | None:
        row = await self.db.fetchrow(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE parent_id = $1 AND name_key = $2 "
            "AND trashed_at IS NULL",
            parent_id,
            name_key(name),
        )
        return Node.from_row(row) if row else None

    async def lookup(self, folder: Folder, parts: list[str]) -> Node:
        """The live node at ``parts`` (the folder's root for ``[]``)."""
        node = await self.node(folder.root_id)
        for depth, part in enumerate(parts):
            if not node.is_dir:
                raise NotFound(f"{join_path(parts[:depth])} is a file, not a folder")
            found = await self.child(node.id, part)
            if found is None:
                raise NotFound(f"nothing at {folder.name}/{join_path(parts[: depth + 1])}")
            node = found
        return node

    async def node_for_source(self, source: str) -> Node | None:
        """The file a Matrix event (``source``) was stored as, if it was."""
        node_id = await self.db.fetchval(
            "SELECT node_id FROM drive_file_version WHERE source = $1", source
        )
        return await self.node(node_id) if node_id else None

    async def children(self, node: Node) -> list[Node]:
        if not node.is_dir:
            return [node]
        rows = await self.db.fetch(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE parent_id = $1 AND trashed_at IS NULL "
            "ORDER BY kind, name_key",
            node.id,
        )
        return [Node.from_row(r) for r in rows]

    async def path_of(self, node: Node) -> str:
        """The node's path inside its folder ('' for the root)."""
        parts: list[str] = []
        while node.parent_id is not None:
            parts.append(node.name)
            node = await self.node(node.parent_id)
        return join_path(list(reversed(parts)))

    async def walk(self, folder: Folder, below: Node | None = None) -> list[tuple[str, Node]]:
        """Every live node of the folder with its path, parents before children; with
        ``below`` (a folder in it), only what is under that one, paths relative to it."""
        rows = await self.db.fetch(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE folder_id = $1 AND trashed_at IS NULL",
            folder.id,
        )
        by_parent: dict[str | None, list[Node]] = {}
        for row in rows:
            node = Node.from_row(row)
            by_parent.setdefault(node.parent_id, []).append(node)
        out: list[tuple[str, Node]] = []
        stack = [("", below.id if below is not None else folder.root_id)]
        while stack:
            prefix, parent = stack.pop()
            for node in sorted(by_parent.get(parent, []), key=lambda n: n.name):
                path = f"{prefix}/{node.name}" if prefix else node.name
                out.append((path, node))
                if node.is_dir:
                    stack.append((path, node.id))
        return out

    async def every_node(self, folder: Folder) -> list[Node]:
        """Every node of the folder: live, in the trash, and inside trashed folders."""
        rows = await self.db.fetch(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE folder_id = $1", folder.id
        )
        return [Node.from_row(r) for r in rows]

    # ----- changing -----
    async def mkdir(self, folder: Folder, parts: list[str], actor: str) -> Node:
        """Create the folder at ``parts`` and any missing parents (existing ones are fine)."""
        if not parts:
            raise DriveError("name the folder to create")
        node = await self.node(folder.root_id)
        for part in parts:
            found = await self.child(node.id, part)
            if found is None:
                found = await self._insert(folder, node.id, part, "dir", actor)
            elif not found.is_dir:
                raise Conflict(f"{found.name} is a file, not a folder")
            node = found
        return node

    async def _insert(
        self, folder: Folder, parent_id: str, name: str, kind: str, actor: str
    ) -> Node:
        name = check_name(name)
        node_id, now = new_id(), now_ms()
        try:
            await self.db.execute(
                "INSERT INTO drive_node (id, folder_id, parent_id, name, name_key, kind, "
                "revision, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)",
                node_id,
                folder.id,
                parent_id,
                name,
                name_key(name),
                kind,
                now,
                actor,
            )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise Conflict(f"{name!r} already exists there (names ignore case)") from exc
            raise
        await self._changed(folder.id, node_id, 1)
        return await self.node(node_id)

    async def add_version(
        self,
        folder: Folder,
        parent: Node,
        name: str,
        *,
        sha256: str,
        size: int,
        mime: str | None,
        sniffed: str | None = None,
        actor: str,
        if_match: int | None = None,
        create_only: bool = False,
        source: str | None = None,
        quota: int | None = None,
    ) -> tuple[Node, bool]:
        """Make ``sha256`` the new content of ``parent/name`` (creating the file).

        The size is charged to the folder's owner in the same transaction, refused with
        :class:`QuotaExceeded` when it would pass ``quota``. Returns the node and whether
        a version was added (False when ``source`` — a Matrix event id — was stored
        already, so a repeated event changes nothing).
        """
        if source is not None and (done := await self.node_for_source(source)):
            return done, False
        existing = await self.child(parent.id, name)
        if existing is not None and existing.is_dir:
            raise Conflict(f"{existing.name} is a folder; choose another file name")
        if existing is not None and create_only:
            raise StaleRevision(f"{existing.name} already exists (revision {existing.revision})")
        if existing is None and if_match is not None:
            raise StaleRevision(f"{name} does not exist any more; it was moved or deleted")
        now = now_ms()
        # One transaction: a new file's row, its content, the charge to the quota and
        # the change feed appear together or not at all.
        async with self.db.acquire() as conn, conn.transaction():
            if existing is None:
                existing = await self._insert(folder, parent.id, name, "file", actor)
                expected = existing.revision
            else:
                expected = existing.revision if if_match is None else if_match
            number = existing.version_no + 1
            updated = await conn.fetchval(
                "UPDATE drive_node SET revision = revision + 1, version_no = $3, sha256 = $4, "
                "size = $5, mime = $6, updated_at = $7, updated_by = $8, sniffed = $9 "
                "WHERE id = $1 AND revision = $2 AND trashed_at IS NULL RETURNING revision",
                existing.id,
                expected,
                number,
                sha256,
                size,
                mime,
                now,
                actor,
                sniffed,
            )
            if updated is None:
                raise StaleRevision(
                    f"{existing.name} changed since revision {expected}; fetch it again"
                )
            await self._charge(conn, folder.owner, size, quota)
            await conn.execute(
                "INSERT INTO drive_file_version (node_id, number, sha256, size, mime, author, "
                "created_at, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                existing.id,
                number,
                sha256,
                size,
                mime,
                actor,
                now,
                source,
            )
            await self._changed(folder.id, existing.id, updated, conn)
        return await self.node(existing.id), True

    async def move(
        self,
        folder: Folder,
        node: Node,
        new_parent: Node,
        new_name: str,
        actor: str,
        if_match: int | None = None,
    ) -> Node:
        if node.parent_id is None:
            raise DriveError("the shared folder itself cannot be moved")
        if not new_parent.is_dir:
            raise Conflict(f"{new_parent.name} is a file, not a folder")
        ancestor: Node | None = new_parent
        while ancestor is not None:
            if ancestor.id == node.id:
                raise Conflict(f"cannot move {node.name} into itself")
            ancestor = await self.node(ancestor.parent_id) if ancestor.parent_id else None
        new_name = check_name(new_name)
        return await self._update(
            folder,
            node,
            if_match,
            "parent_id = $3, name = $4, name_key = $5",
            new_parent.id,
            new_name,
            name_key(new_name),
            actor=actor,
            taken=f"{new_name!r} already exists in {new_parent.name}",
        )

    async def trash(
        self, folder: Folder, node: Node, actor: str, if_match: int | None = None
    ) -> Node:
        if node.parent_id is None:
            raise DriveError("the shared folder itself cannot be put in the trash")
        return await self._update(
            folder, node, if_match, "trashed_at = $3, trashed_by = $4", now_ms(), actor, actor=actor
        )

    async def restore(self, folder: Folder, node: Node, actor: str) -> Node:
        if node.trashed_at is None:
            raise DriveError(f"{node.name} is not in the trash")
        parent = await self.node(node.parent_id)
        if parent.trashed_at is not None:
            raise Conflict(f"its folder {parent.name} is in the trash too: restore that first")
        return await self._update(
            folder,
            node,
            None,
            "trashed_at = NULL, trashed_by = NULL",
            actor=actor,
            taken=f"{node.name!r} exists again in {parent.name}: rename or remove that one first",
        )

    async def _update(
        self,
        folder: Folder,
        node: Node,
        if_match: int | None,
        assignments: str,
        *values: Any,
        actor: str,
        taken: str = "the name is taken",
    ) -> Node:
        expected = node.revision if if_match is None else if_match
        n = len(values)
        try:
            async with self.db.acquire() as conn, conn.transaction():
                revision = await conn.fetchval(
                    f"UPDATE drive_node SET {assignments}, revision = revision + 1, "
                    f"updated_at = ${n + 3}, updated_by = ${n + 4} "
                    "WHERE id = $1 AND revision = $2 RETURNING revision",
                    node.id,
                    expected,
                    *values,
                    now_ms(),
                    actor,
                )
                if revision is None:
                    raise StaleRevision(
                        f"{node.name} changed since revision {expected}; fetch it again"
                    )
                await self._changed(folder.id, node.id, revision, conn)
        except StaleRevision:
            raise
        except Exception as exc:
            if _is_unique_violation(exc):
                raise Conflict(taken) from exc
            raise
        return await self.node(node.id)

    # ----- trash, versions, quota, changes -----
    async def trashed(self, folder: Folder) -> list[Node]:
        rows = await self.db.fetch(
            f"SELECT {NODE_COLUMNS} FROM drive_node WHERE folder_id = $1 "
            "AND trashed_at IS NOT NULL ORDER BY trashed_at DESC",
            folder.id,
        )
        return [Node.from_row(r) for r in rows]

    async def versions(self, node: Node) -> list[Version]:
        rows = await self.db.fetch(
            "SELECT node_id, number, sha256, size, mime, author, created_at "
            "FROM drive_file_version WHERE node_id = $1 ORDER BY number DESC",
            node.id,
        )
        return [Version.from_row(r) for r in rows]

    async def folder_versions(self, folder: Folder) -> list[Version]:
        """Every version of every file of the folder, the trash's included."""
        rows = await self.db.fetch(
            "SELECT v.node_id, v.number, v.sha256, v.size, v.mime, v.author, v.created_at "
            "FROM drive_file_version v JOIN drive_node n ON n.id = v.node_id "
            "WHERE n.folder_id = $1 ORDER BY v.node_id, v.number DESC",
            folder.id,
        )
        return [Version.from_row(r) for r in rows]

    async def usage(self, owner: str) -> int:
        """Bytes charged to ``owner``: every version (trash included) of their folders."""
        value = await self.db.fetchval("SELECT bytes FROM drive_usage WHERE owner = $1", owner)
        return int(value or 0)

    async def _charge(self, conn: Any, owner: str, size: int, quota: int | None) -> None:
        """Add ``size`` to the owner's usage, atomically refusing to pass ``quota`` (two
        uploads at once cannot both slip under it)."""
        await conn.execute(
            "INSERT INTO drive_usage (owner, bytes) VALUES ($1, 0) ON CONFLICT (owner) DO NOTHING",
            owner,
        )
        limit = quota if quota is not None else 2**62
        charged = await conn.fetchval(
            "UPDATE drive_usage SET bytes = bytes + $2 WHERE owner = $1 AND bytes + $2 <= $3 "
            "RETURNING bytes",
            owner,
            size,
            limit,
        )
        if charged is None:
            used = await conn.fetchval("SELECT bytes FROM drive_usage WHERE owner = $1", owner)
            raise QuotaExceeded(
                f"{human_size(size)} does not fit: {owner} has "
                f"{human_size(max(0, limit - int(used)))} free of {human_size(limit)} "
                "(old versions and the trash count too); nothing was kept"
            )

    async def blob_in_use(self, sha256: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM drive_file_version WHERE sha256 = $1 LIMIT 1", sha256
            )
        )

    async def purge(self, folder: Folder, node_ids: list[str]) -> tuple[int, int, set[str]]:
        """Delete these nodes, and everything below them, for good: their rows and every
        version; the owner's usage goes down by the versions' sizes. Returns (how many
        nodes, bytes freed, the content hashes they used — which may now be unused)."""
        ids, frontier = list(node_ids), list(node_ids)
        freed, hashes = 0, set()
        async with self.db.acquire() as conn, conn.transaction():
            while frontier:  # the whole subtree, in the same transaction as the deletes
                for row in await conn.fetch(
                    "SELECT id FROM drive_node WHERE parent_id = $1", frontier.pop()
                ):
                    ids.append(row["id"])
                    frontier.append(row["id"])
            for node_id in ids:
                for row in await conn.fetch(
                    "SELECT sha256, size FROM drive_file_version WHERE node_id = $1", node_id
                ):
                    freed += int(row["size"])
                    hashes.add(row["sha256"])
                await conn.execute("DELETE FROM drive_file_version WHERE node_id = $1", node_id)
                revision = await conn.fetchval(
                    "DELETE FROM drive_node WHERE id = $1 RETURNING revision", node_id
                )
                await self._changed(folder.id, node_id, int(revision or 0) + 1, conn)
            if freed:
                await conn.execute(
                    "UPDATE drive_usage SET bytes = bytes - $2 WHERE owner = $1",
                    folder.owner,
                    freed,
                )
        return len(ids), freed, hashes

    async def trashed_before(self, cutoff_ms: int) -> list[tuple[str, str]]:
        """(folder id, node id) of everything put in the trash before ``cutoff_ms``."""
        rows = await self.db.fetch(
            "SELECT folder_id, id FROM drive_node WHERE trashed_at IS NOT NULL AND trashed_at < $1",
            cutoff_ms,
        )
        return [(row["folder_id"], row["id"]) for row in rows]

    async def changes(
        self, folder: Folder, since: int, limit: int = 1000
    ) -> list[tuple[int, str, Node | None]]:
        """What changed after ``since``: (seq, node id, the node now — None when it was
        purged from the trash), the latest change of each node once, in order."""
        rows = await self.db.fetch(
            "SELECT c.seq AS seq, c.node_id AS node_id FROM drive_change c "
            "WHERE c.folder_id = $1 AND c.seq > $2 ORDER BY c.seq LIMIT $3",
            folder.id,
            since,
            limit,
        )
        latest: dict[str, int] = {}
        for row in rows:
            latest[row["node_id"]] = int(row["seq"])
        out = []
        for node_id, seq in latest.items():
            row = await self.db.fetchrow(
                f"SELECT {NODE_COLUMNS} FROM drive_node WHERE id = $1", node_id
            )
            out.append((seq, node_id, Node.from_row(row) if row else None))
        return sorted(out, key=lambda item: item[0])

    async def cursor(self, folder: Folder) -> int:
        value = await self.db.fetchval(
            "SELECT MAX(seq) FROM drive_change WHERE folder_id = $1", folder.id
        )
        return int(value or 0)

    async def _changed(self, folder_id: str, node_id: str, revision: int, conn: Any = None) -> None:
        await (conn or self.db).execute(
            "INSERT INTO drive_change (folder_id, node_id, revision, at) VALUES ($1, $2, $3, $4)",
            folder_id,
            node_id,
            revision,
            now_ms(),
        )


def _is_unique_violation(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "UNIQUE constraint failed" in text or "UniqueViolation" in text
