"""Running a sync: lock, scan, compare, apply item by item (the manifest advancing after
each), and stop before a run that looks like a mistake (a mass delete, an empty side).

Nothing from the server is trusted to name a local path: the tree's paths are checked
(:class:`~.remote.Tree`), paths at or under a symbolic link in the local folder are set
aside (neither written nor deleted on either side), and every local write goes through
:class:`~.disk.LocalFolder`, which never follows a link. What is set aside or refused is
reported as skipped."""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..names import InvalidName, name_key, split_path
from .disk import LocalFolder, Unsafe
from .local import STATE_DIR, LocalItem, ensure_hash, folds_case, scan
from .lock import SyncLock
from .manifest import Entry, Manifest
from .plan import Action, Plan, make_plan
from .remote import Progress, Remote, RemoteError, Tree

ProgressFactory = Callable[[str, int], Progress | None]


class NeedsForce(Exception):
    """The run looks dangerous; nothing was changed. Run again with --force if meant."""


@dataclass
class Report:
    done: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # server items not synced, and why

    def count(self, kind: str) -> None:
        self.done[kind] = self.done.get(kind, 0) + 1

    def summary(self) -> str:
        if not self.done and not self.errors and not self.skipped:
            return "Everything is in sync."
        parts = [f"{kind.replace('_', ' ')}: {n}" for kind, n in sorted(self.done.items())]
        if self.skipped:
            parts.append(f"skipped: {len(self.skipped)}")
        if self.errors:
            parts.append(f"errors: {len(self.errors)}")
        return "; ".join(parts)


def conflict_name(path: str, device: str, when: float | None = None) -> str:
    """``NAME (conflicted copy DEVICE YYYY-MM-DD HHMMSS).EXT`` next to the original."""
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a dot-file)
        stem, dot, ext = name, "", ""
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.localtime(when))
    new = f"{stem} (conflicted copy {device} {stamp}){dot}{ext}"
    return f"{folder}/{new}" if folder else new


class Sync:
    def __init__(
        self,
        remote: Remote,
        folder_id: str,
        root: Path,
        *,
        device: str = "pc",
        force: bool = False,
        progress: ProgressFactory | None = None,
        case_insensitive: bool | None = None,
    ) -> None:
        """``case_insensitive``: whether the local disk folds case (None: ask the disk)."""
        self.remote = remote
        self.folder = folder_id
        self.root = root
        self.disk = LocalFolder(root)
        self.case_insensitive = case_insensitive
        self.device = device
        self.force = force
        self.progress = progress or (lambda name, size: None)
        self.state = root / STATE_DIR
        self.report = Report()
        self._remote_dirs: set[str] = {""}

    async def run(self) -> Report:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder")
        with SyncLock(self.state / "lock") as lock:
            if lock.took_over:
                self.report.notes.append(
                    f"took over a stale lock left by pid {lock.took_over.get('pid')}"
                )
            manifest = Manifest(self.state / "manifest.db")
            try:
                await self._run(manifest)
            finally:
                manifest.close()
        return self.report

    async def _run(self, manifest: Manifest) -> None:
        known_folder = manifest.get_meta("folder")
        if known_folder and known_folder != self.folder:
            raise NeedsForce(
                f"{self.root} is synced with another drive folder ({known_folder}); "
                "use an empty local folder for this one"
            )
        manifest.set_meta("folder", self.folder)
        entries = self._checked_entries(manifest)
        remote, cursor = await self._remote_state(manifest, entries)
        found = scan(self.root, entries)
        self.report.notes.extend(found.warnings)
        local = found.items
        self._set_aside_links(found.links, entries, remote)
        self._remote_dirs |= {p for p, n in remote.items() if n["kind"] == "dir"}
        plan = make_plan(
            entries, local, remote, lambda item: ensure_hash(self.root, item),
            fold=name_key if self._folds_case() else None,
        )  # fmt: skip
        self.report.notes.extend(plan.clashes)
        self._check_safety(plan, entries, local, remote)
        files_first = sorted(plan.actions, key=_order)
        for action in files_first:
            try:
                await self._apply(action, manifest)
            except Unsafe as exc:
                self.report.skipped.append(f"{action.dest or action.path}: {exc}")
            except RemoteError as exc:
                if exc.status == 412:
                    self.report.notes.append(
                        f"{action.path} changed on the server meanwhile; the next run sorts it out"
                    )
                else:
                    self.report.errors.append(f"{action.path}: {exc}")
        # What was skipped is not in the manifest: the next run lists the tree again.
        if not self.report.errors and not self.report.skipped:
            manifest.set_meta("cursor", str(cursor))

    def _checked_entries(self, manifest: Manifest) -> dict[str, Entry]:
        """The manifest's entries. A manifest written by a client that did not check the
        server's paths is checked once: an entry whose path could leave the folder (from
        a hostile server's answer) is forgotten. Later entries come from checked paths."""
        entries = manifest.entries()
        if manifest.get_meta("paths_checked") == "1":
            return entries
        for path in list(entries):
            try:
                split_path(path)
            except InvalidName as exc:
                del entries[path]
                manifest.forget(path)
                self.report.notes.append(f"forgot {path!r} from an earlier sync: {exc}")
        manifest.set_meta("paths_checked", "1")
        return entries

    async def _remote_state(
        self, manifest: Manifest, entries: dict[str, Entry]
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """The server's tree, checked; when nothing changed since the last complete run,
        the manifest already is that tree and the listing is skipped."""
        stored = manifest.get_meta("cursor")
        if stored is not None:
            feed = await self.remote.changes(self.folder, int(stored))
            if not feed["changes"]:
                tree = {
                    p: {"id": e.node_id, "kind": e.kind, "revision": e.revision,
                        "sha256": e.sha256, "size": e.size}
                    for p, e in entries.items()
                }  # fmt: skip
                return tree, int(stored)
        listing: Tree = await self.remote.tree(self.folder)
        self.report.skipped.extend(listing.refused)
        return listing.nodes, listing.cursor

    def _set_aside_links(
        self, links: set[str], entries: dict[str, Entry], remote: dict[str, dict[str, Any]]
    ) -> None:
        """Paths at or under a symbolic link here are neither written (the link is not
        followed) nor deleted on the server (they are not gone, only not reachable)."""
        if not links:
            return

        def link_above(path: str) -> str | None:
            parts = path.split("/")
            return next(
                (p for i in range(1, len(parts) + 1) if (p := "/".join(parts[:i])) in links),
                None,
            )

        for path in sorted(set(entries) | set(remote)):
            link = link_above(path)
            if link is None:
                continue
            entries.pop(path, None)
            if remote.pop(path, None) is not None:
                self.report.skipped.append(
                    f"{path}: {link} is a symbolic link here, and the sync never writes "
                    "through one; replace the link with a real folder to sync this path"
                )

    def _folds_case(self) -> bool:
        if self.case_insensitive is None:
            self.case_insensitive = folds_case(self.state)
        return self.case_insensitive

    def _check_safety(
        self,
        plan: Plan,
        entries: dict[str, Entry],
        local: dict[str, LocalItem],
        remote: dict[str, dict[str, Any]],
    ) -> None:
        if self.force:
            return
        known = sum(1 for e in entries.values() if e.kind == "file")
        if not known:
            return
        local_files = sum(1 for i in local.values() if i.kind == "file")
        remote_files = sum(1 for n in remote.values() if n["kind"] == "file")
        if not local_files or not remote_files:
            side = "the local folder" if not local_files else "the drive folder"
            raise NeedsForce(
                f"{side} is empty but {known} files were synced before; if that is what you "
                "want, run again with --force (nothing was changed)"
            )
        deletions = plan.count("delete_local", "delete_remote")
        if deletions * 2 > known:
            raise NeedsForce(
                f"this run would delete {deletions} of {known} files; if that is what you "
                "want, run again with --force (nothing was changed)"
            )

    # ----- applying one action -----
    async def _apply(self, action: Action, manifest: Manifest) -> None:
        handler = getattr(self, f"_do_{action.kind}")
        await handler(action, manifest)
        self.report.count(action.kind)

    async def _do_upload(self, action: Action, manifest: Manifest) -> None:
        await self._upload(_disk(action), action.path, manifest, action.remote)

    async def _upload(
        self, local_path: str, remote_path: str, manifest: Manifest, node: dict | None
    ) -> None:
        before = self.disk.lstat(local_path)
        if before is None or not stat.S_ISREG(before.st_mode):
            raise Unsafe(f"{local_path} is no longer a file here; the next run sorts it out")
        await self._remote_parent(remote_path)
        result = await self.remote.upload(
            self.folder,
            remote_path,
            lambda: self.disk.open_read(local_path),
            before.st_size,
            node["revision"] if node else None,
            self.progress(remote_path, before.st_size),
        )
        manifest.put(
            Entry(remote_path, result["id"], "file", result["revision"], result["sha256"],
                  result["size"], before.st_mtime_ns)
        )  # fmt: skip

    async def _remote_parent(self, path: str) -> None:
        """Create the folder ``path`` goes in on the server, unless it is known to exist."""
        parent = path.rpartition("/")[0]
        if parent not in self._remote_dirs:
            await self.remote.mkdir(self.folder, parent)
            self._remote_dirs.add(parent)

    async def _do_download(self, action: Action, manifest: Manifest) -> None:
        node = action.remote
        target = _disk(action)
        if action.local is not None and self._changed_since_scan(target, action.local):
            self.report.notes.append(f"{action.path} changed during the sync; next run")
            return
        tmp = f"{STATE_DIR}/tmp/{secrets.token_hex(8)}"
        try:
            with self.disk.create(tmp) as handle:
                await self.remote.download(
                    self.folder, action.path, handle, node["sha256"],
                    self.progress(action.path, node.get("size", 0)),
                )  # fmt: skip
            self.disk.move(tmp, target)
        finally:
            self.disk.unlink(tmp)
        info = self._written(target)
        manifest.put(
            Entry(action.path, node["id"], "file", node["revision"], node["sha256"],
                  info.st_size, info.st_mtime_ns)
        )  # fmt: skip

    async def _do_record(self, action: Action, manifest: Manifest) -> None:
        node, item = action.remote, action.local
        manifest.put(
            Entry(action.path, node["id"], "file", node["revision"], node["sha256"],
                  item.size, item.mtime_ns)
        )  # fmt: skip

    async def _do_conflict(self, action: Action, manifest: Manifest) -> None:
        """Yours becomes a conflicted copy (uploaded too); the server's takes the name.
        ``action.local`` may be a file whose name differs from the server's only by case
        (on a disk that folds case, writing one would overwrite the other)."""
        mine = action.local.path if action.local is not None else action.path
        copy = conflict_name(mine, self.device)
        self.disk.move(_disk(action), copy)
        await self._upload(copy, copy, manifest, None)
        await self._do_download(Action("download", action.path, remote=action.remote), manifest)
        self.report.notes.append(f"conflict: your version of {mine} is now {copy}")

    async def _do_delete_remote(self, action: Action, manifest: Manifest) -> None:
        await self.remote.delete(self.folder, action.path, action.remote["revision"])
        manifest.forget(action.path)

    async def _do_delete_local(self, action: Action, manifest: Manifest) -> None:
        target = _disk(action)
        if action.local is not None and self._changed_since_scan(target, action.local):
            return
        self._to_local_trash(_disk(action))
        manifest.forget(action.path)

    async def _do_forget(self, action: Action, manifest: Manifest) -> None:
        manifest.forget(action.path)

    async def _do_rename_local(self, action: Action, manifest: Manifest) -> None:
        node, entry = action.remote, action.entry
        self.disk.move(_disk(action), action.dest)
        manifest.forget(action.path)
        info = self._written(action.dest)
        manifest.put(
            Entry(action.dest, node["id"], "file", node["revision"], entry.sha256,
                  info.st_size, info.st_mtime_ns)
        )  # fmt: skip

    async def _do_rename_remote(self, action: Action, manifest: Manifest) -> None:
        await self._remote_parent(action.dest)
        moved = await self.remote.move(
            self.folder, action.path, action.dest, action.remote["revision"]
        )
        info = (self.root / _disk(action)).stat()
        manifest.forget(action.path)
        manifest.put(
            Entry(action.dest, moved["id"], "file", moved["revision"], action.entry.sha256,
                  info.st_size, info.st_mtime_ns)
        )  # fmt: skip

    async def _do_mkdir_remote(self, action: Action, manifest: Manifest) -> None:
        node = await self.remote.mkdir(self.folder, action.path)
        self._remote_dirs.add(action.path)
        manifest.put(Entry(action.path, node["id"], "dir", node["revision"], None, 0, 0))

    async def _do_mkdir_local(self, action: Action, manifest: Manifest) -> None:
        self.disk.mkdir(action.path)
        node = action.remote
        manifest.put(Entry(action.path, node["id"], "dir", node["revision"], None, 0, 0))

    async def _do_record_dir(self, action: Action, manifest: Manifest) -> None:
        node = action.remote
        manifest.put(Entry(action.path, node["id"], "dir", node["revision"], None, 0, 0))

    async def _do_delete_remote_dir(self, action: Action, manifest: Manifest) -> None:
        await self.remote.delete(self.folder, action.path, action.remote["revision"])
        manifest.forget(action.path)

    async def _do_delete_local_dir(self, action: Action, manifest: Manifest) -> None:
        target = _disk(action)
        if self.disk.is_empty_dir(target):
            self.disk.rmdir(target)
        else:
            self._to_local_trash(target)
        manifest.forget(action.path)

    def _to_local_trash(self, path: str) -> None:
        """Local deletions are moves into .anywhere-sync/trash/: nothing is lost."""
        if self.disk.lstat(path) is None:
            return
        trash = f"{STATE_DIR}/trash/{time.strftime('%Y%m%d-%H%M%S')}/{path}"
        if self.disk.lstat(trash) is not None:  # a folder of that name went there already
            trash += f" {secrets.token_hex(3)}"
        self.disk.move(path, trash)

    def _written(self, path: str) -> os.stat_result:
        info = self.disk.lstat(path)
        if info is None:
            raise Unsafe(f"{path} was gone right after it was written; the next run retries")
        return info

    def _changed_since_scan(self, path: str, item: LocalItem) -> bool:
        info = self.disk.lstat(path)
        if info is None:
            return True
        return info.st_size != item.size or info.st_mtime_ns != item.mtime_ns


ORDER = [
    "rename_local", "rename_remote", "mkdir_remote", "mkdir_local", "record_dir", "record",
    "upload", "download", "conflict", "delete_remote", "delete_local", "forget",
    "delete_remote_dir", "delete_local_dir",
]  # fmt: skip


def _order(action: Action) -> tuple[int, int, str]:
    depth = action.path.count("/")
    rank = ORDER.index(action.kind)
    # Folders are created parents first and deleted children first.
    return rank, -depth if action.kind.endswith("_dir") else depth, action.path


def _disk(action: Action) -> str:
    """Where the action's local file is on this disk (its drive path in NFC may differ)."""
    return action.local.disk if action.local is not None else action.path
