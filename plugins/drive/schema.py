"""The drive's tables (component ``drive``). Names, folders, versions and the trash are
rows; content is in the blob store, referenced by SHA-256, so renames and restores touch
no content."""

from __future__ import annotations

from mautrix.util.async_db import Scheme

from anywhere.storage import Migrations
from anywhere.storage.migrations import serial_primary_key


async def create_tables(conn, scheme: Scheme) -> None:
    """folders, members, nodes, versions, change feed"""
    serial = serial_primary_key(scheme)
    await conn.execute(
        """CREATE TABLE drive_folder (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            root_id TEXT NOT NULL,
            room_id TEXT,
            created_at BIGINT NOT NULL,
            UNIQUE (owner, name_key)
        )"""
    )
    await conn.execute("CREATE UNIQUE INDEX drive_folder_room ON drive_folder (room_id)")
    await conn.execute(
        """CREATE TABLE drive_member (
            folder_id TEXT NOT NULL REFERENCES drive_folder (id),
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            state TEXT NOT NULL,
            invited_by TEXT,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (folder_id, user_id)
        )"""
    )
    await conn.execute(
        """CREATE TABLE drive_node (
            id TEXT PRIMARY KEY,
            folder_id TEXT NOT NULL REFERENCES drive_folder (id),
            parent_id TEXT,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            kind TEXT NOT NULL,
            revision BIGINT NOT NULL,
            version_no INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT,
            size BIGINT NOT NULL DEFAULT 0,
            mime TEXT,
            sniffed TEXT,
            updated_at BIGINT NOT NULL,
            updated_by TEXT NOT NULL,
            trashed_at BIGINT,
            trashed_by TEXT
        )"""
    )
    # Live names are unique per folder by their collision key; trashed ones may repeat.
    await conn.execute(
        "CREATE UNIQUE INDEX drive_node_live_name ON drive_node (parent_id, name_key) "
        "WHERE trashed_at IS NULL"
    )
    await conn.execute("CREATE INDEX drive_node_folder ON drive_node (folder_id)")
    await conn.execute(
        """CREATE TABLE drive_file_version (
            node_id TEXT NOT NULL REFERENCES drive_node (id),
            number INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            mime TEXT,
            author TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            source TEXT UNIQUE,
            PRIMARY KEY (node_id, number)
        )"""
    )
    await conn.execute("CREATE INDEX drive_version_sha ON drive_file_version (sha256)")
    await conn.execute(
        f"""CREATE TABLE drive_change (
            seq {serial},
            folder_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            revision BIGINT NOT NULL,
            at BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX drive_change_folder ON drive_change (folder_id, seq)")


async def add_usage_counter(conn, scheme: Scheme) -> None:
    """bytes used per owner, kept with every version (quota checks without a scan)"""
    await conn.execute("CREATE TABLE drive_usage (owner TEXT PRIMARY KEY, bytes BIGINT NOT NULL)")
    await conn.execute(
        "INSERT INTO drive_usage (owner, bytes) SELECT f.owner, SUM(v.size) "
        "FROM drive_file_version v JOIN drive_node n ON n.id = v.node_id "
        "JOIN drive_folder f ON f.id = n.folder_id GROUP BY f.owner"
    )


async def add_pending_content(conn, scheme: Scheme) -> None:
    """content stored by an upload and not yet recorded in a version: what start-up may
    delete after a crash (never content it merely finds unused)"""
    await conn.execute(
        "CREATE TABLE drive_pending_content (sha256 TEXT PRIMARY KEY, stored_at BIGINT NOT NULL)"
    )


async def add_content_kinds(conn, scheme: Scheme) -> None:
    """what each stored content is (audio, video, ...), as judged by which version of the
    judge (see plugins/drive/judge.py): each content is looked into once"""
    await conn.execute(
        "CREATE TABLE drive_content_kind (sha256 TEXT PRIMARY KEY, kind TEXT, "
        "judge INTEGER NOT NULL)"
    )


async def add_webdav_tables(conn, scheme: Scheme) -> None:
    """WebDAV: app passwords (SHA-256 of a random 256-bit secret), locks by folder and
    path, and dead properties by node (see plugins/drive/webdav/)"""
    await conn.execute(
        """CREATE TABLE drive_app_password (
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT,
            PRIMARY KEY (user_id, name)
        )"""
    )
    await conn.execute(
        """CREATE TABLE drive_dav_lock (
            token TEXT PRIMARY KEY,
            folder_id TEXT NOT NULL,
            path TEXT NOT NULL,
            path_key TEXT NOT NULL,
            depth_infinity BOOLEAN NOT NULL,
            exclusive BOOLEAN NOT NULL,
            owner_xml TEXT,
            user_id TEXT NOT NULL,
            timeout_seconds BIGINT NOT NULL,
            expires_at BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX drive_dav_lock_folder ON drive_dav_lock (folder_id)")
    await conn.execute(
        """CREATE TABLE drive_dav_property (
            node_id TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            value_xml TEXT NOT NULL,
            PRIMARY KEY (node_id, namespace, name)
        )"""
    )


DRIVE_MIGRATIONS = Migrations(
    "drive",
    [create_tables, add_usage_counter, add_pending_content, add_content_kinds, add_webdav_tables],
)
