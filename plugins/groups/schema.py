"""The groups plugin's tables (component ``groups``)."""

from __future__ import annotations

from mautrix.util.async_db import Scheme

from anywhere.storage import Migrations
from anywhere.storage.migrations import is_postgres


async def v1_groups(conn, scheme: Scheme) -> None:
    """group rooms, portals, ghosts, the message map and the outbox"""
    serial = "BIGSERIAL PRIMARY KEY" if is_postgres(scheme) else "INTEGER PRIMARY KEY"
    await conn.execute(
        """CREATE TABLE groups_room (
            room_id    TEXT PRIMARY KEY,
            name       TEXT NOT NULL,
            creator    TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            -- the command that created it: handling that event again finds the room
            event_id   TEXT UNIQUE
        )"""
    )
    # one Matrix room per remote group chat, or per (remote person, Matrix person)
    await conn.execute(
        """CREATE TABLE groups_portal (
            network     TEXT NOT NULL,
            portal_key  TEXT NOT NULL,
            remote_id   TEXT NOT NULL,
            kind        TEXT NOT NULL,
            room_id     TEXT NOT NULL UNIQUE,
            matrix_user TEXT,
            PRIMARY KEY (network, portal_key)
        )"""
    )
    await conn.execute(
        """CREATE TABLE groups_ghost (
            user_id     TEXT PRIMARY KEY,
            network     TEXT NOT NULL,
            remote_id   TEXT NOT NULL,
            displayname TEXT
        )"""
    )
    # message ids both ways: for edits, replies, redactions and exactly-once delivery
    await conn.execute(
        """CREATE TABLE groups_message (
            network   TEXT NOT NULL,
            remote_id TEXT NOT NULL,
            room_id   TEXT NOT NULL,
            event_id  TEXT NOT NULL,
            origin    TEXT NOT NULL,
            PRIMARY KEY (network, remote_id)
        )"""
    )
    await conn.execute("CREATE INDEX groups_message_event ON groups_message (event_id)")
    # Matrix events waiting to reach their network (kept across restarts and outages)
    await conn.execute(
        f"""CREATE TABLE groups_outbox (
            seq       {serial},
            event_id  TEXT NOT NULL UNIQUE,
            room_id   TEXT NOT NULL,
            event     TEXT NOT NULL,
            state     TEXT NOT NULL DEFAULT 'queued'
        )"""
    )


async def v2_ghost_avatar(conn, scheme: Scheme) -> None:
    """ghost avatars: the hash of the avatar last uploaded, so an unchanged one is kept"""
    await conn.execute("ALTER TABLE groups_ghost ADD COLUMN avatar_hash TEXT")


async def v3_ghost_scope(conn, scheme: Scheme) -> None:
    """ghosts counted per remote address and domain (plugins.settings.groups.limits)"""
    from .limits import address_and_domain

    await conn.execute("ALTER TABLE groups_ghost ADD COLUMN address TEXT")
    await conn.execute("ALTER TABLE groups_ghost ADD COLUMN domain TEXT")
    for row in await conn.fetch("SELECT user_id, remote_id FROM groups_ghost"):
        address, domain = address_and_domain(row["remote_id"])
        await conn.execute(
            "UPDATE groups_ghost SET address = $1, domain = $2 WHERE user_id = $3",
            address,
            domain,
            row["user_id"],
        )
    await conn.execute("CREATE INDEX groups_ghost_address ON groups_ghost (network, address)")
    await conn.execute("CREATE INDEX groups_ghost_domain ON groups_ghost (network, domain)")


async def v4_xmpp_room_position(conn, scheme: Scheme) -> None:
    """the archive id of the last message of each linked XMPP room the bridge handled"""
    await conn.execute(
        """CREATE TABLE groups_xmpp_room (
            room       TEXT PRIMARY KEY,
            archive_id TEXT NOT NULL
        )"""
    )


async def v5_message_sender(conn, scheme: Scheme) -> None:
    """who wrote each mapped message (the remote person's ID, or the Matrix user ID): only
    its author may correct or retract it"""
    await conn.execute("ALTER TABLE groups_message ADD COLUMN sender TEXT")


MIGRATIONS = Migrations(
    "groups",
    [v1_groups, v2_ghost_avatar, v3_ghost_scope, v4_xmpp_room_position, v5_message_sender],
)
