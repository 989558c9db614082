"""The manifest of the last successful sync, item by item: what both sides agreed on
(path, node id, revision, sha256, size, local mtime). SQLite, committed after every item,
so an interrupted run resumes where it stopped."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    path: str
    node_id: str
    kind: str  # "file" or "dir"
    revision: int
    sha256: str | None
    size: int
    mtime_ns: int


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS entry (path TEXT PRIMARY KEY, node_id TEXT NOT NULL, "
            "kind TEXT NOT NULL, revision INTEGER NOT NULL, sha256 TEXT, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL)"
        )
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def close(self) -> None:
        self.conn.close()

    def entries(self) -> dict[str, Entry]:
        rows = self.conn.execute(
            "SELECT path, node_id, kind, revision, sha256, size, mtime_ns FROM entry"
        )
        return {row[0]: Entry(*row) for row in rows}

    def put(self, entry: Entry) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO entry VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.path,
                entry.node_id,
                entry.kind,
                entry.revision,
                entry.sha256,
                entry.size,
                entry.mtime_ns,
            ),
        )

    def forget(self, path: str) -> None:
        self.conn.execute("DELETE FROM entry WHERE path = ?", (path,))

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
