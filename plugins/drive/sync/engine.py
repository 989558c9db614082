"""Running a sync: lock, scan, compare, apply item by item (the manifest advancing after
each), and stop before a run that looks like a mistake (a mass delete, an empty side)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .local import STATE_DIR, LocalItem, ensure_hash, scan
from .lock import SyncLock
from .manifest import Entry, Manifest
from .plan import Action, Plan, make_plan
from .remote import Progress, Remote, RemoteError

ProgressFactory = Callable[[str, int], Progress | None]


class NeedsForce(Exception):
    """The run looks dangerous; nothing was changed. Run again with --force if meant."""


@dataclass
class Report:
    done: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.done[kind] = self.done.get(kind, 0) + 1

    def summary(self) -> str:
        if not self.done and not self.errors:
            return "Everything is in sync."
        parts = [f"{kind.replace('_', ' ')}: {n}" for kind, n in sorted(self.done.items())]
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
    ) -> None:
        self.remote = remote
        self.folder = folder_id
        self.root = root
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
        entries = manifest.entries()
        remote, cursor = await self._remote_state(manifest, entries)
        local, warnings = scan(self.root, entries)
        self.report.notes.extend(warnings)
        self._remote_dirs |= {p for p, n in remote.items() if n["kind"] == "dir"}
        plan = make_plan(entries, local, remote, lambda item: ensure_hash(self.root, item))
        self.report.notes.extend(plan.clashes)
        self._check_safety(plan, entries, local, remote)
        (self.state / "tmp").mkdir(parents=True, exist_ok=True)
        files_first = sorted(plan.actions, key=_order)
        for action in files_first:
            try:
                await self._apply(action, manifest)
            except RemoteError as exc:
                if exc.status == 412:
                    self.report.notes.append(
                        f"{action.path} changed on the server meanwhile; the next run sorts it out"
                    )
                else:
                    self.report.errors.append(f"{action.path}: {exc}")
        if not self.report.errors:
            manifest.set_meta("cursor", str(cursor))

    async def _remote_state(
        self, manifest: Manifest, entries: dict[str, Entry]
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """The server's tree; when nothing changed since the last complete run, the
        manifest already is that tree and the listing is skipped."""
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
        listing = await self.remote.tree(self.folder)
        return {n["path"]: n for n in listing["nodes"]}, int(listing["cursor"])

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
        source = self.root / local_path
        before = source.stat()
        await self._remote_parent(remote_path)
        size = before.st_size
        result = await self.remote.upload(
            self.folder,
            remote_path,
            source,
            node["revision"] if node else None,
            self.progress(remote_path, size),
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
        target = self.root / _disk(action)
        if action.local is not None and _changed_since_scan(target, action.local):
            self.report.notes.append(f"{action.path} changed during the sync; next run")
            return
        tmp = self.state / "tmp" / secrets.token_hex(8)
        try:
            await self.remote.download(
                self.folder, action.path, tmp, node["sha256"],
                self.progress(action.path, node.get("size", 0)),
            )  # fmt: skip
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        info = target.stat()
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
        copy = conflict_name(action.path, self.device)
        os.replace(self.root / _disk(action), self.root / copy)
        await self._upload(copy, copy, manifest, None)
        await self._do_download(Action("download", action.path, remote=action.remote), manifest)
        self.report.notes.append(f"conflict: your version of {action.path} is now {copy}")

    async def _do_delete_remote(self, action: Action, manifest: Manifest) -> None:
        await self.remote.delete(self.folder, action.path, action.remote["revision"])
        manifest.forget(action.path)

    async def _do_delete_local(self, action: Action, manifest: Manifest) -> None:
        target = self.root / _disk(action)
        if action.local is not None and _changed_since_scan(target, action.local):
            return
        self._to_local_trash(_disk(action))
        manifest.forget(action.path)

    async def _do_forget(self, action: Action, manifest: Manifest) -> None:
        manifest.forget(action.path)

    async def _do_rename_local(self, action: Action, manifest: Manifest) -> None:
        node, entry = action.remote, action.entry
        target = self.root / action.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / _disk(action), target)
        manifest.forget(action.path)
        info = target.stat()
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
        (self.root / action.path).mkdir(parents=True, exist_ok=True)
        node = action.remote
        manifest.put(Entry(action.path, node["id"], "dir", node["revision"], None, 0, 0))

    async def _do_record_dir(self, action: Action, manifest: Manifest) -> None:
        node = action.remote
        manifest.put(Entry(action.path, node["id"], "dir", node["revision"], None, 0, 0))

    async def _do_delete_remote_dir(self, action: Action, manifest: Manifest) -> None:
        await self.remote.delete(self.folder, action.path, action.remote["revision"])
        manifest.forget(action.path)

    async def _do_delete_local_dir(self, action: Action, manifest: Manifest) -> None:
        target = self.root / _disk(action)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif target.exists():
            self._to_local_trash(_disk(action))
        manifest.forget(action.path)

    def _to_local_trash(self, path: str) -> None:
        """Local deletions are moves into .anywhere-sync/trash/: nothing is lost."""
        target = self.root / path
        if not target.exists():
            return
        trash = self.state / "trash" / time.strftime("%Y%m%d-%H%M%S") / path
        trash.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), str(trash))


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


def _changed_since_scan(path: Path, item: LocalItem) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return True
    return info.st_size != item.size or info.st_mtime_ns != item.mtime_ns
