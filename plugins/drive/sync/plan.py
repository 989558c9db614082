"""The three-way comparison: the local tree, the server's tree and the manifest of the
last successful sync decide, path by path, what to do. Pure: no I/O but the hashing
function it is given, so every rule can be tested on its own.

The rules: a side that did not change since the manifest follows the other; both
changed to the same content → nothing to do; to different content → a conflict (the
server keeps the name, the local file becomes a conflicted copy); an edit beats a
delete; a rename on one side is replayed on the other. Clocks are never compared. On a
disk that folds case, a server file and a different local file whose names differ only
by case are one file there: the local one becomes a conflicted copy, as in a conflict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .local import LocalItem
from .manifest import Entry


@dataclass
class Action:
    kind: str
    path: str
    dest: str | None = None
    remote: dict[str, Any] | None = None
    local: LocalItem | None = None
    entry: Entry | None = None


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)

    def count(self, *kinds: str) -> int:
        return sum(1 for a in self.actions if a.kind in kinds)


def make_plan(
    manifest: dict[str, Entry],
    local: dict[str, LocalItem],
    remote: dict[str, dict[str, Any]],
    hash_of: Callable[[LocalItem], str],
    *,
    fold: Callable[[str], str] | None = None,
) -> Plan:
    """``fold``: the key two paths are one file under on the local disk, when it folds
    case (:func:`~anywhere.plugins.drive.names.name_key`); None when the disk tells them apart."""
    plan = Plan()
    handled: set[str] = set()
    files = {p for p, e in manifest.items() if e.kind == "file"}
    files |= {p for p, i in local.items() if i.kind == "file"}
    files |= {p for p, n in remote.items() if n["kind"] == "file"}

    def local_unchanged(path: str, entry: Entry) -> bool:
        item = local.get(path)
        return item is not None and item.kind == "file" and hash_of(item) == entry.sha256

    # Renames on the server: the node the manifest knew at p is now at q.
    at_path = {n["id"]: p for p, n in remote.items()}
    for p, entry in sorted(manifest.items()):
        q = at_path.get(entry.node_id)
        if entry.kind != "file" or q is None or q == p or q in manifest or q in local:
            continue
        if p in remote or not local_unchanged(p, entry):
            continue
        plan.actions.append(
            Action("rename_local", p, dest=q, remote=remote[q], local=local[p], entry=entry)
        )
        handled |= {p, q}

    # Renames here: a file gone from p, a new file at q with p's content.
    added = {
        q: item
        for q, item in local.items()
        if item.kind == "file" and q not in manifest and q not in remote
    }
    for p, entry in sorted(manifest.items()):
        node = remote.get(p)
        if entry.kind != "file" or p in handled or p in local or node is None:
            continue
        if node["id"] != entry.node_id or node.get("sha256") != entry.sha256:
            continue
        q = next((q for q, item in sorted(added.items()) if hash_of(item) == entry.sha256), None)
        if q is not None:
            plan.actions.append(
                Action("rename_remote", p, dest=q, remote=node, local=added[q], entry=entry)
            )
            handled |= {p, q}
            del added[q]

    if fold is not None:
        _plan_case_collisions(plan, handled, manifest, local, remote, fold)

    for path in sorted(files - handled):
        entry, item, node = manifest.get(path), local.get(path), remote.get(path)
        if (item and item.kind != "file") or (node and node["kind"] != "file"):
            plan.clashes.append(f"{path} is a file on one side and a folder on the other")
            continue
        kind = _decide(entry, item, node, hash_of)
        if kind:
            plan.actions.append(Action(kind, path, remote=node, local=item, entry=entry))

    _plan_dirs(plan, manifest, local, remote)
    return plan


def _plan_case_collisions(
    plan: Plan,
    handled: set[str],
    manifest: dict[str, Entry],
    local: dict[str, LocalItem],
    remote: dict[str, dict[str, Any]],
    fold: Callable[[str], str],
) -> None:
    """A server file P new to this disk, and a local file Q (not on the server) with
    fold(P) == fold(Q): downloading P would overwrite Q, so Q is kept as a conflicted
    copy and P downloaded (the conflict action)."""
    by_key = {fold(p): p for p, i in local.items() if i.kind == "file" and p not in handled}
    for path, node in sorted(remote.items()):
        if node["kind"] != "file" or path in local or path in handled:
            continue
        mine = by_key.get(fold(path))
        if mine is None or mine == path or mine in remote or mine in handled:
            continue
        plan.actions.append(
            Action("conflict", path, remote=node, local=local[mine], entry=manifest.get(path))
        )
        handled |= {path, mine}


def _decide(
    entry: Entry | None,
    item: LocalItem | None,
    node: dict[str, Any] | None,
    hash_of: Callable[[LocalItem], str],
) -> str | None:
    if entry is None:
        if item and node:
            return "record" if hash_of(item) == node.get("sha256") else "conflict"
        return "upload" if item else "download"
    local_changed = item is not None and hash_of(item) != entry.sha256
    remote_changed = node is not None and (
        node["id"] != entry.node_id or node.get("sha256") != entry.sha256
    )
    if item is None and node is None:
        return "forget"
    if item is None:  # deleted here
        return "download" if remote_changed else "delete_remote"
    if node is None:  # deleted on the server
        return "upload" if local_changed else "delete_local"
    if local_changed and remote_changed:
        return "record" if hash_of(item) == node.get("sha256") else "conflict"
    if local_changed:
        return "upload"
    if remote_changed:
        return "download"
    if node["revision"] != entry.revision or item.mtime_ns != entry.mtime_ns:
        return "record"  # same content; the revision or the mtime moved
    return None


def _plan_dirs(
    plan: Plan,
    manifest: dict[str, Entry],
    local: dict[str, LocalItem],
    remote: dict[str, dict[str, Any]],
) -> None:
    # Files leaving a folder (deleted, or renamed away) do not keep it alive.
    deleting_remote = {a.path for a in plan.actions if a.kind in ("delete_remote", "rename_remote")}
    deleting_local = {a.path for a in plan.actions if a.kind in ("delete_local", "rename_local")}
    dirs = {p for p, e in manifest.items() if e.kind == "dir"}
    dirs |= {p for p, i in local.items() if i.kind == "dir"}
    dirs |= {p for p, n in remote.items() if n["kind"] == "dir"}
    for path in sorted(dirs):
        entry, item, node = manifest.get(path), local.get(path), remote.get(path)
        if (item and item.kind != "dir") or (node and node["kind"] != "dir"):
            continue  # reported with the files
        inside = path + "/"
        if item and node:
            if entry is None or entry.node_id != node["id"]:
                plan.actions.append(Action("record_dir", path, remote=node))
        elif item and entry is None:
            plan.actions.append(Action("mkdir_remote", path))
        elif node and entry is None:
            plan.actions.append(Action("mkdir_local", path, remote=node))
        elif item is None and node is None:
            plan.actions.append(Action("forget", path, entry=entry))
        elif item is None:  # deleted here: delete there only if nothing else lives in it
            others = [
                p for p in remote if p.startswith(inside) and p not in deleting_remote
                and remote[p]["kind"] == "file"
            ]  # fmt: skip
            kind = "mkdir_local" if others else "delete_remote_dir"
            plan.actions.append(Action(kind, path, remote=node, entry=entry))
        else:  # deleted on the server
            others = [
                p for p in local if p.startswith(inside) and p not in deleting_local
                and local[p].kind == "file"
            ]  # fmt: skip
            kind = "mkdir_remote" if others else "delete_local_dir"
            plan.actions.append(Action(kind, path, local=item, entry=entry))
