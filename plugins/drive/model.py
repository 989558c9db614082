"""The drive's records, as the service hands them out."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

ROLES = ("owner", "editor", "viewer")
WRITE_ROLES = ("owner", "editor")
# Member states: invited (no access yet), joined (accepted), declined, left, revoked.
ACTIVE = "joined"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Folder:
    id: str
    owner: str
    name: str
    root_id: str
    room_id: str | None

    @classmethod
    def from_row(cls, row: Any) -> Folder:
        return cls(row["id"], row["owner"], row["name"], row["root_id"], row["room_id"])


@dataclass(frozen=True)
class Member:
    folder_id: str
    user_id: str
    role: str
    state: str
    invited_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> Member:
        return cls(row["folder_id"], row["user_id"], row["role"], row["state"], row["invited_by"])


@dataclass(frozen=True)
class Node:
    id: str
    folder_id: str
    parent_id: str | None
    name: str
    kind: str  # "dir" or "file"
    revision: int
    version_no: int
    sha256: str | None
    size: int
    mime: str | None
    sniffed: str | None
    updated_at: int
    updated_by: str
    trashed_at: int | None

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @classmethod
    def from_row(cls, row: Any) -> Node:
        return cls(
            row["id"],
            row["folder_id"],
            row["parent_id"],
            row["name"],
            row["kind"],
            int(row["revision"]),
            int(row["version_no"]),
            row["sha256"],
            int(row["size"]),
            row["mime"],
            row["sniffed"],
            int(row["updated_at"]),
            row["updated_by"],
            row["trashed_at"],
        )

    def as_json(self, path: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "revision": self.revision,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }
        if path is not None:
            data["path"] = path
        if not self.is_dir:
            data |= {"size": self.size, "sha256": self.sha256, "mime": self.mime}
            data["version"] = self.version_no
        if self.trashed_at is not None:
            data["trashed_at"] = self.trashed_at
        return data


@dataclass(frozen=True)
class Version:
    node_id: str
    number: int
    sha256: str
    size: int
    mime: str | None
    author: str
    created_at: int

    @classmethod
    def from_row(cls, row: Any) -> Version:
        return cls(
            row["node_id"],
            int(row["number"]),
            row["sha256"],
            int(row["size"]),
            row["mime"],
            row["author"],
            int(row["created_at"]),
        )


NODE_COLUMNS = (
    "id, folder_id, parent_id, name, kind, revision, version_no, sha256, size, mime, sniffed, "
    "updated_at, updated_by, trashed_at"
)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
