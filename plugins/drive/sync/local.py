"""The local side: a scan of LOCAL_DIR that never follows a symlink and never leaves
the folder, hashing only files whose size or mtime moved since the manifest."""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..names import SYNC_STATE_DIR, InvalidName, check_name, name_key
from .manifest import Entry

STATE_DIR = SYNC_STATE_DIR
CHUNK = 1 << 20


@dataclass
class LocalItem:
    """``path`` is the name the drive knows (NFC); ``disk`` the one on this disk (macOS
    and some editors write NFD)."""

    path: str
    kind: str  # "file" or "dir"
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    disk: str = ""

    def __post_init__(self) -> None:
        self.disk = self.disk or self.path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Scan:
    """What a scan found: ``items`` to sync, ``warnings`` for what it skipped, and
    ``links``, the paths that are symbolic links (nothing is synced at or under them)."""

    items: dict[str, LocalItem]
    warnings: list[str]
    links: set[str]


def scan(root: Path, manifest: dict[str, Entry]) -> Scan:
    """Every file and folder under ``root`` (paths with ``/``, in NFC), and warnings for
    what is skipped: symlinks, names other computers cannot hold, and names in one folder
    that differ only by case or normalisation (the drive holds one of them)."""
    items: dict[str, LocalItem] = {}
    warnings: list[str] = []
    links: set[str] = set()
    stack = [("", "", root)]
    while stack:
        prefix, disk_prefix, directory = stack.pop()
        seen: dict[str, str] = {}
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not prefix and entry.name == STATE_DIR:
                continue
            name = entry.name if entry.name.isascii() else unicodedata.normalize("NFC", entry.name)
            rel = f"{prefix}/{name}" if prefix else name
            disk = f"{disk_prefix}/{entry.name}" if disk_prefix else entry.name
            key = name.lower() if name.isascii() else name_key(name)
            if key in seen:
                warnings.append(
                    f"skipped {disk}: it differs from {seen[key]} only by case or accents, "
                    "and the drive (like Windows and macOS) holds only one; rename it"
                )
                continue
            seen[key] = disk
            if rel not in manifest:  # names already synced were checked then
                try:
                    check_name(name)
                except InvalidName as exc:
                    warnings.append(f"skipped {disk}: {exc}")
                    continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                warnings.append(f"skipped {disk}: symbolic links are not synced")
                links.add(rel)
            elif stat.S_ISDIR(info.st_mode):
                items[rel] = LocalItem(rel, "dir", disk=disk)
                stack.append((rel, disk, Path(entry.path)))
            elif stat.S_ISREG(info.st_mode):
                item = LocalItem(rel, "file", info.st_size, info.st_mtime_ns, disk=disk)
                known = manifest.get(rel)
                if known and known.size == item.size and known.mtime_ns == item.mtime_ns:
                    item.sha256 = known.sha256  # unchanged since the last sync
                items[rel] = item
    return Scan(items, warnings, links)


def folds_case(directory: Path) -> bool:
    """Whether the disk holding ``directory`` takes ``A`` and ``a`` for one name (macOS
    and Windows do by default): a probe file is made and looked up in lower case."""
    probe = directory / f"Case-Probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    try:
        return os.path.lexists(directory / probe.name.lower())
    finally:
        probe.unlink(missing_ok=True)


def ensure_hash(root: Path, item: LocalItem) -> str:
    if item.sha256 is None:
        item.sha256 = file_sha256(root / item.disk)
    return item.sha256
