"""The policy plugin's tables (component ``policy``)."""

from __future__ import annotations

from mautrix.util.async_db import Scheme

from anywhere.policy.audit import upgrade_v1 as audit_v1
from anywhere.storage import Migrations
from anywhere.storage.migrations import is_postgres


async def v2_facts(conn, scheme: Scheme) -> None:
    """facts the bridge keeps: networks, usage, verification, daily active users"""
    real = "DOUBLE PRECISION" if is_postgres(scheme) else "REAL"
    await conn.execute(
        """CREATE TABLE policy_network (
            user_id     TEXT PRIMARY KEY,
            network     TEXT NOT NULL,
            reported_at BIGINT NOT NULL
        )"""
    )
    await conn.execute(
        f"""CREATE TABLE policy_usage (
            user_id TEXT NOT NULL,
            month   TEXT NOT NULL,
            metric  TEXT NOT NULL,
            amount  {real} NOT NULL,
            PRIMARY KEY (user_id, month, metric)
        )"""
    )
    await conn.execute(
        """CREATE TABLE policy_verified (
            user_id     TEXT PRIMARY KEY,
            method      TEXT NOT NULL,
            verified_at BIGINT NOT NULL,
            phone_hash  TEXT
        )"""
    )
    await conn.execute(
        "CREATE TABLE policy_pending (user_id TEXT PRIMARY KEY, state TEXT NOT NULL)"
    )
    await conn.execute(
        """CREATE TABLE policy_active_user (
            day     TEXT NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (day, user_id)
        )"""
    )


async def v3_notices(conn, scheme: Scheme) -> None:
    """when a person was last told about a refusal by the Synapse module, per rule"""
    await conn.execute(
        """CREATE TABLE policy_notice (
            user_id  TEXT NOT NULL,
            rule_key TEXT NOT NULL,
            sent_at  BIGINT NOT NULL,
            PRIMARY KEY (user_id, rule_key)
        )"""
    )


MIGRATIONS = Migrations("policy", [audit_v1, v2_facts, v3_notices])
