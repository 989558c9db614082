"""The drive as one object: folders and access, the tree, content, quota and the
content (copyright) rule. Commands, chat uploads and the HTTP API all go through it, so
the rules are the same whichever way a person comes in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from mautrix.util.async_db import Database

from anywhere.bridge.api import Decision
from anywhere.storage.blobs import BlobStore, BlobWriter, StagedFile

from .access import Access
from .errors import (
    Conflict,
    ContentRefused,
    Denied,
    DriveError,
    NotFound,
    QuotaExceeded,
    StaleRevision,
)
from .judge import PROBE_BYTES, ContentJudge
from .mediakind import MediaKinds, guess_mime, media_kinds
from .model import Folder, Node, Version, human_size, now_ms
from .names import check_name, split_path
from .quota import NEARLY_FULL, Quota, Reservation, Reservations
from .settings import DriveSettings

__all__ = ["NEARLY_FULL", "Drive", "Quota", "allow_everything"]

Authorize = Callable[[str, str, str | None, dict[str, Any]], Awaitable[Decision]]


async def allow_everything(actor: str, action: str, target: str | None, context: dict) -> Decision:
    """The answer of a bridge without a policy plugin."""
    return Decision.allow()


class Staged(Protocol):
    """Content arriving in a local file (see :meth:`Drive.upload_staged`)."""

    path: Path
    size: int

    async def finished(self) -> str:
        """Once every byte is in the file, durably: its SHA-256."""
        ...

    async def head(self, length: int) -> bytes:
        """The first ``length`` bytes (once they are there)."""
        ...


class Drive:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        settings: DriveSettings,
        authorize: Authorize = allow_everything,
    ) -> None:
        from .tree import Tree

        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.access = Access(db)
        self.tree = Tree(db)
        self.judge = ContentJudge(db, blobs)
        self.reservations = Reservations(self.tree.usage, settings.quota_bytes)
        self._authorize = authorize
        # held while new content is not yet referenced by a version, and while unused
        # content is deleted (see empty_trash)
        self.blob_lock = asyncio.Lock()

    # ----- finding things -----
    async def resolve(
        self, user: str, folder: Folder, path: str, *, write: bool = False
    ) -> tuple[Node, str]:
        """The live node at ``path`` in ``folder`` for ``user`` (checks access)."""
        parts = split_path(path, allow_empty=True)
        await self.access.require(folder, user, write=write)
        return await self.tree.lookup(folder, parts), "/".join(parts)

    # ----- content -----
    async def quota(self, owner: str) -> Quota:
        return Quota(await self.tree.usage(owner), self.settings.quota_bytes)

    async def upload(
        self,
        user: str,
        folder: Folder,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        declared_size: int | None = None,
        mime: str | None = None,
        if_match: int | None = None,
        create_only: bool = False,
        source: str | None = None,
    ) -> tuple[Node, bool]:
        """Store ``chunks`` as the new content of ``path``; nothing is kept unless all of
        it arrived, fits the owner's quota and passes the content rule. The upload holds
        its part of the quota as its bytes arrive (see :mod:`anywhere.plugins.drive.quota`), and
        is judged by its first bytes (see :mod:`anywhere.plugins.drive.judge`)."""
        parts = split_path(path)
        await self.access.require(folder, user, write=True)
        if source is not None and (done := await self.tree.node_for_source(source)):
            return done, False  # a repeated Matrix event: stored already
        parent = await self._upload_parent(folder, parts, if_match, create_only)
        async with self.reservations.start(folder.owner) as held:
            if declared_size is not None and not await held.cover(declared_size):
                raise await self._over_quota(folder, declared_size, held)
            writer = await self.blobs.writer()
            prefix = bytearray()  # what the content is judged by
            try:
                async for chunk in chunks:
                    if not await held.cover(writer.size + len(chunk)):
                        raise await self._over_quota(folder, writer.size + len(chunk), held)
                    await writer.write(chunk)
                    if len(prefix) < PROBE_BYTES:
                        prefix += chunk[: PROBE_BYTES - len(prefix)]
                content_kind, declared = await self._judge_upload(
                    user, folder, parts, bytes(prefix), mime
                )
            except BaseException:
                await writer.abort()
                raise
            return await self._record(
                writer, held, folder, parent, parts[-1], content_kind,
                mime=declared or guess_mime(parts[-1]), actor=user, if_match=if_match,
                create_only=create_only, source=source,
            )  # fmt: skip

    async def upload_staged(
        self, user: str, folder: Folder, path: str, staged: Staged, *, mime: str | None = None
    ) -> Node:
        """Store content that arrives in a local file (a resumable upload) under the same
        rules as :meth:`upload`: the owner's quota is held for ``staged.size`` from now,
        ``staged.finished()`` waits for the last byte and gives the SHA-256, and the file
        is handed to the blob store whole (:func:`anywhere.storage.blobs.adopt_file`: no
        copy where the store allows)."""
        parts = split_path(path)
        await self.access.require(folder, user, write=True)
        parent = await self._upload_parent(folder, parts, None, False)
        async with self.reservations.start(folder.owner) as held:
            if not await held.cover(staged.size):
                raise await self._over_quota(folder, staged.size, held)
            sha256 = await staged.finished()
            content_kind, declared = await self._judge_upload(
                user, folder, parts, await staged.head(PROBE_BYTES), mime
            )
            writer = StagedFile(self.blobs, staged.path, sha256, staged.size)
            node, _ = await self._record(
                writer, held, folder, parent, parts[-1], content_kind,
                mime=declared or guess_mime(parts[-1]), actor=user,
            )  # fmt: skip
            return node

    async def _upload_parent(
        self, folder: Folder, parts: list[str], if_match: int | None, create_only: bool
    ) -> Node:
        """The folder an upload goes into (it must be one), after its preconditions."""
        parent = await self.tree.lookup(folder, parts[:-1])
        if not parent.is_dir:
            raise DriveError(f"{parent.name} is a file, not a folder")
        await self._precondition(parent, parts[-1], if_match, create_only)
        return parent

    async def _judge_upload(
        self, user: str, folder: Folder, parts: list[str], prefix: bytes, mime: str | None
    ) -> tuple[str | None, str | None]:
        """The uploaded content's sniffed kind and its declared type (None when only
        generic), after the content rule for a shared folder."""
        declared = mime if mime and mime != "application/octet-stream" else None
        content_kind = await self.judge.judge(prefix)
        kinds = media_kinds(content_kind, parts[-1], declared)
        if await self._shared_with_others(folder, user):
            await self.check_share(user, f"{folder.name}/{'/'.join(parts)}", kinds)
        return content_kind, declared

    async def _record(
        self,
        writer: BlobWriter,
        held: Reservation,
        folder: Folder,
        parent: Node,
        name: str,
        content_kind: str | None,
        **version: Any,
    ) -> tuple[Node, bool]:
        """Store the written content and record it as the file's new version, charging
        its size (the reservation ``held`` ends when the caller's block does)."""
        # From here until the version is recorded, the content is referenced by nothing:
        # emptying a trash (which deletes unreferenced content) waits, and the content is
        # noted as pending, so that start-up after a crash in between knows it may go.
        async with self.blob_lock:
            blob = await writer.commit()
            try:
                await self.db.execute(
                    "INSERT INTO drive_pending_content (sha256, stored_at) VALUES ($1, $2) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    blob.sha256,
                    now_ms(),
                )
                await self.judge.remember(blob.sha256, content_kind)
                node, added = await self.tree.add_version(
                    folder,
                    parent,
                    name,
                    sha256=blob.sha256,
                    size=blob.size,
                    sniffed=content_kind,
                    quota=self.reservations.limit_beside(folder.owner, held),
                    **version,
                )
                held.charged = blob.size if added else 0
                return node, added
            except BaseException:
                if not await self.tree.blob_in_use(blob.sha256):
                    await self.blobs.delete(blob.sha256)
                    await self.judge.forget(blob.sha256)
                raise
            finally:
                await self.db.execute(
                    "DELETE FROM drive_pending_content WHERE sha256 = $1", blob.sha256
                )

    async def move_to_folder(
        self, user: str, source: Folder, node: Node, target: Folder, parent: Node, name: str
    ) -> Node:
        """Move ``node`` (a file, or a folder with what it holds) into another shared
        folder: it is copied to ``parent/name`` in ``target`` (see :meth:`copy`) and the
        original goes to ``source``'s trash, where its older versions stay restorable. Its
        size leaves ``source``'s owner's quota when that trash is emptied."""
        await self.access.require(source, user, write=True)
        if node.parent_id is None:
            raise DriveError("a shared folder itself cannot be moved; move what it holds")
        made = await self.copy(user, source, node, target, parent, name)
        await self.tree.trash(source, node, user)
        return made

    async def copy(
        self,
        user: str,
        source: Folder,
        node: Node,
        target: Folder,
        parent: Node,
        name: str,
        *,
        recursive: bool = True,
    ) -> Node:
        """Copy ``node`` (a file, or a folder with what it holds unless not
        ``recursive``) to ``parent/name`` in ``target`` (the same folder or another) —
        with the current content of each file, no bytes copied. The size counts to
        ``target``'s owner (refused over quota before anything changes). Copying into a
        folder shared with others is sharing: the copyright rule applies as for an
        upload."""
        await self.access.require(source, user)
        await self.access.require(target, user, write=True)
        name = check_name(name)
        if await self.tree.child(parent.id, name) is not None:
            raise Conflict(f"{name!r} already exists in {target.name}")
        below = await self.tree.walk(source, node) if node.is_dir and recursive else []
        subtree = [("", node)] + below
        files = [(rel, n) for rel, n in subtree if not n.is_dir]
        total = sum(n.size for _, n in files)
        limit = self.reservations.limit_beside(target.owner)
        if total > limit - await self.tree.usage(target.owner):
            raise await self._over_quota(target, total)
        base = await self.tree.path_of(parent)
        base_parts = split_path(base, allow_empty=True) + [name]
        if await self._shared_with_others(target, user):
            for rel, n in files:
                where = "/".join(base_parts + (split_path(rel) if rel else []))
                await self.check_share(user, f"{target.name}/{where}", await self.kinds_of(n))
        made: dict[str, Node] = {}  # by path relative to the moved node, parents first
        for rel, n in subtree:
            parts = base_parts + (split_path(rel) if rel else [])
            if n.is_dir:
                made[rel] = await self.tree.mkdir(target, parts, user)
                continue
            made[rel], _ = await self.tree.add_version(
                target,
                made[rel.rpartition("/")[0]] if rel else parent,
                parts[-1],
                sha256=n.sha256,
                size=n.size,
                mime=n.mime,
                sniffed=n.sniffed,
                actor=user,
                create_only=True,
                quota=self.reservations.limit_beside(target.owner),
            )
        return made[""]

    async def empty_trash(
        self, user: str | None, folder: Folder, cutoff_ms: int | None = None
    ) -> tuple[int, int]:
        """Delete what is in the folder's trash (put there before ``cutoff_ms``, if given)
        for good, and the content nothing else uses; ``user`` must own the folder (None:
        the bridge itself, for expired trash). Returns (files and folders deleted,
        bytes of quota freed)."""
        if user is not None and user != folder.owner:
            raise Denied(f"only the owner of {folder.name} can empty its trash")
        nodes = [
            n.id
            for n in await self.tree.trashed(folder)
            if cutoff_ms is None or (n.trashed_at or 0) < cutoff_ms
        ]
        if not nodes:
            return 0, 0
        count, freed, hashes = await self.tree.purge(folder, nodes)
        async with self.blob_lock:
            for sha256 in hashes:
                if not await self.tree.blob_in_use(sha256):
                    await self.blobs.delete(sha256)
                    await self.judge.forget(sha256)
        return count, freed

    async def finish_interrupted_uploads(self) -> int:
        """Delete content that an upload stored but a crash stopped before it was
        recorded (the uploads noted as pending), unless a version uses it after all.
        Returns how many contents went.

        Only content noted as pending is ever deleted here, never content that merely
        looks unused: a database that lacks rows (a wrong ``database.url``, a restored
        backup) must not cost the storage its files — see :meth:`unused_content`."""
        removed = 0
        for row in await self.db.fetch("SELECT sha256 FROM drive_pending_content"):
            sha256 = row["sha256"]
            async with self.blob_lock:  # an upload recording its version waits
                if not await self.tree.blob_in_use(sha256):
                    await self.blobs.delete(sha256)
                    await self.judge.forget(sha256)
                    removed += 1
                await self.db.execute("DELETE FROM drive_pending_content WHERE sha256 = $1", sha256)
        return removed

    async def unused_content(self) -> int:
        """How many stored contents no version uses (kept, and reported at start-up)."""
        used = {
            row["sha256"]
            for row in await self.db.fetch("SELECT DISTINCT sha256 FROM drive_file_version")
        }
        return sum(1 for sha256 in await self.blobs.hashes() if sha256 not in used)

    async def empty_expired_trash(self, days: int) -> tuple[int, int]:
        """Empty what has been in any trash longer than ``days`` days."""
        cutoff = now_ms() - days * 86_400_000
        count = freed = 0
        for folder_id in sorted({f for f, _ in await self.tree.trashed_before(cutoff)}):
            folder = await self.access.folder(folder_id)
            c, b = await self.empty_trash(None, folder, cutoff)
            count, freed = count + c, freed + b
        return count, freed

    async def _precondition(
        self, parent: Node, name: str, if_match: int | None, create_only: bool
    ) -> None:
        """Refuse a stale write before reading its body (checked again when stored)."""
        existing = await self.tree.child(parent.id, name)
        if existing is not None and create_only:
            raise StaleRevision(f"{existing.name} already exists (revision {existing.revision})")
        if if_match is not None and (existing is None or existing.revision != if_match):
            now = "it was moved or deleted" if existing is None else f"it is at {existing.revision}"
            raise StaleRevision(f"{name} is not at revision {if_match} any more ({now})")

    async def _over_quota(
        self, folder: Folder, size: int, held: Reservation | None = None
    ) -> QuotaExceeded:
        """The refusal, with the space free beside what uploads under way hold."""
        limit = self.reservations.limit_beside(folder.owner, held)
        free = max(0, limit - await self.tree.usage(folder.owner))
        counted = (
            "old versions and the trash count too"
            if limit == self.settings.quota_bytes
            else "old versions, the trash and uploads under way count too"
        )
        return QuotaExceeded(
            f"{human_size(size)} does not fit: {folder.owner} has {human_size(free)} free of "
            f"{human_size(self.settings.quota_bytes)} ({counted}); nothing was kept"
        )

    def content(self, node: Node, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if node.is_dir or node.sha256 is None:
            raise NotFound(f"{node.name} is a folder, not a file")
        return self.blobs.read(node.sha256, start, end)

    async def revert(self, user: str, folder: Folder, path: str, number: int) -> Node:
        """Make version ``number`` of ``path`` its current content again (as a new
        version). In a folder shared with others that is sharing the old content: the
        copyright rule applies as for an upload."""
        node, rel = await self.resolve(user, folder, path, write=True)
        versions = {v.number: v for v in await self.tree.versions(node)}
        if number not in versions:
            known = ", ".join(str(n) for n in sorted(versions)) or "none"
            raise NotFound(f"{node.name} has no version {number} (versions: {known})")
        old = versions[number]
        content_kind = await self.judge.kind(old.sha256)
        if await self._shared_with_others(folder, user):
            kinds = media_kinds(content_kind, node.name, old.mime)
            await self.check_share(user, f"{folder.name}/{rel} (version {number})", kinds)
        parent = await self.tree.node(node.parent_id)
        updated, _ = await self.tree.add_version(
            folder,
            parent,
            node.name,
            sha256=old.sha256,
            size=old.size,
            mime=old.mime,
            sniffed=content_kind,
            actor=user,
            if_match=node.revision,
            quota=self.reservations.limit_beside(folder.owner),
        )
        return updated

    async def restore(self, user: str, folder: Folder, node: Node) -> Node:
        """Take ``node`` (and what it holds) out of the trash. In a folder shared with
        others that is sharing it again, every version: the copyright rule applies."""
        await self.access.require(folder, user, write=True)
        if await self._shared_with_others(folder, user):
            below = await self.tree.walk(folder, node) if node.is_dir else []
            await self._check_versions_share(user, folder, [node] + [n for _, n in below])
        return await self.tree.restore(folder, node, user)

    # ----- the content rule -----
    async def kinds_of(self, node: Node) -> MediaKinds:
        """The current content's kinds: its content as judged, its name, its type."""
        content_kind = await self.judge.kind(node.sha256) if node.sha256 else None
        return media_kinds(content_kind, node.name, node.mime)

    async def check_share(
        self, actor: str, target: str, kinds: MediaKinds, context: dict[str, Any] | None = None
    ) -> None:
        """Refuse (``ContentRefused``, with the reason) sharing media out of the drive.

        The policy engine is asked first (``drive.share``): its denial stands. Then the
        drive's own rule: ``share_blocked_kinds`` (audio and video by default), judged by
        content, extension and declared type, the strictest look winning.
        """
        decision = await self._authorize(
            actor, "drive.share", target, {**kinds.facts(), **(context or {})}
        )
        if not decision.allowed:
            raise ContentRefused(f"sharing {target} is refused: {decision.reason}")
        blocked = kinds.blocked_by(self.settings.share_blocked_kinds)
        if blocked:
            kind, how = blocked
            raise ContentRefused(
                f"sharing {target} is refused: it is {kind} (judged by {how}), and {kind} "
                "files may not be shared out of the drive, for copyright reasons"
            )

    async def check_folder_share(self, actor: str, folder: Folder) -> None:
        """Sharing a folder shares all it holds — every version of every file, and the
        trash, which its members can revert to and restore: refuse when any is blocked
        media."""
        everything = await self.tree.every_node(folder)
        await self._check_versions_share(actor, folder, everything, everything)

    async def _check_versions_share(
        self, actor: str, folder: Folder, nodes: list[Node], everything: list[Node] | None = None
    ) -> None:
        """Refuse when any version of these files is blocked media, naming it and what
        to do. ``everything``: the folder's every node, if the caller has read it."""
        if everything is None:
            everything = await self.tree.every_node(folder)
        known = {n.id: n for n in everything}
        versions: dict[str, list[Version]] = {}
        for version in await self.tree.folder_versions(folder):
            versions.setdefault(version.node_id, []).append(version)
        judged: dict[str, str | None] = {}  # the same content in many files: judged once
        for node in nodes:
            for version in versions.get(node.id, []):
                if version.sha256 not in judged:
                    judged[version.sha256] = await self.judge.kind(version.sha256)
                kinds = media_kinds(judged[version.sha256], node.name, version.mime)
                where = f"{folder.name}/{_place(node, version, known)}"
                try:
                    await self.check_share(actor, where, kinds)
                except ContentRefused as exc:
                    raise ContentRefused(
                        f"{exc}. Delete it and empty the trash (!drive rm, then !drive empty) "
                        "before sharing the folder: members can restore and revert to "
                        "whatever it holds"
                    ) from exc

    async def _shared_with_others(self, folder: Folder, user: str) -> bool:
        members = await self.access.members(folder.id)
        return any(m.user_id != user and m.state in ("joined", "invited") for m in members)


def _place(node: Node, version: Version, nodes: dict[str, Node]) -> str:
    """Where a version is, for a person: its path, which version, whether in the trash."""
    parts, trashed, current = [], node.trashed_at is not None, node
    while current.parent_id is not None:
        parts.append(current.name)
        current = nodes[current.parent_id]
        trashed = trashed or current.trashed_at is not None
    place = "/".join(reversed(parts))
    if version.number != node.version_no:
        place += f" (version {version.number}, an older version)"
    return place + (" (in the trash)" if trashed else "")
