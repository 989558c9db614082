"""The bridge's side of the exchange with the Synapse module (``POST
/_anywhere/policy/sync``, operator token; see :mod:`anywhere.policy.fact_sync` for the module's).

The module sends what it saw (local people active today, its refusals and dry-run
results) and the cursor of the facts it has; the bridge records the activity (daily
active users) and the decisions (audit log), tells each refused person why in their
direct chat with the bot (once per rule, reason code and period), and answers with the facts that
changed since the cursor — all of them when the cursor is from another run of the
bridge or missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog
from mautrix.types import EventType

from anywhere.policy.audit import AuditEntry, AuditLog

if TYPE_CHECKING:
    from anywhere.bridge.api import Host

    from .facts import FactGatherer

log = structlog.get_logger("anywhere.policy.module")

MAX_DECISIONS = 10_000
MAX_ACTIVE = 100_000


class BadExchange(ValueError):
    """The module's request is malformed; the message says what was wrong."""


class ModuleLink:
    """Answers the module's exchanges; tells refused people why."""

    def __init__(
        self,
        bridge: Host,
        settings: dict[str, Any],
        facts: FactGatherer,
        audit: AuditLog,
    ) -> None:
        self.bridge = bridge
        self.settings = settings
        self.facts = facts
        self.audit = audit
        self._notify_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    async def exchange(self, body: Any) -> dict[str, Any]:
        """Handle one exchange; raises :class:`BadExchange`."""
        cursor, active, entries = _parse(body)
        for day, users in active.items():
            await self.facts.saw_users(day, users)
        refusals = []
        for entry in entries:
            if await self.audit.record_entry(entry) and entry.outcome != "allow":
                refusals.append(entry)
        if refusals:
            task = asyncio.create_task(self._notify(refusals))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await self.answer(cursor)

    async def answer(self, cursor: str | None) -> dict[str, Any]:
        feed = self.facts.feed
        current = feed.cursor
        # Network facts from providers change without the bridge knowing: send everyone.
        changed = feed.changed_since(cursor) if self.facts.network_reported else None
        if changed is None:
            users = await self.facts.module_snapshot()
        else:
            users = {user: await self.facts.module_facts(user) for user in changed}
        return {
            "cursor": current,
            "full": changed is None,
            "users": users,
            "daily_active_users": await self.facts.daily_active_users(),
            "public_institutions": list(self.settings["public_institutions"]),
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----- telling people -----
    async def _notify(self, refusals: list[AuditEntry]) -> None:
        async with self._notify_lock:
            for entry in refusals:
                try:
                    await self._notify_one(entry)
                except Exception:
                    log.exception(
                        "could not tell a person about a refusal",
                        user_id=entry.actor,
                        decision_id=entry.decision_id,
                    )

    async def _notify_one(self, entry: AuditEntry) -> None:
        period = self.settings["refusal_notice_minutes"] * 60
        key = f"{entry.rule_id}:{entry.code}" if entry.rule_id else entry.code
        now = time.time()
        db = self.bridge.db
        last = await db.fetchval(
            "SELECT sent_at FROM policy_notice WHERE user_id = $1 AND rule_key = $2",
            entry.actor,
            key,
        )
        if last is not None and now - last / 1000 < period:
            log.info(
                "refusal notice skipped: already told",
                user_id=entry.actor,
                rule=key,
                decision_id=entry.decision_id,
            )
            return
        await db.execute(
            "INSERT INTO policy_notice (user_id, rule_key, sent_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (user_id, rule_key) DO UPDATE SET sent_at = excluded.sent_at",
            entry.actor,
            key,
            int(now * 1000),
        )
        room_id = await self.bridge.direct_chats.open_with(entry.actor)
        minutes = self.settings["refusal_notice_minutes"]
        where = f"rule {entry.rule_id}" if entry.rule_id else "policy"
        text = (
            f"Your homeserver refused {_what(entry.action)}: {entry.reason}\n"
            f"({where}: {entry.code}; decision {entry.decision_id}). "
            f"I won't repeat this for the next {minutes} minutes; "
            "send !policy explain " + entry.action + " to see the facts and rules."
        )
        await self.bridge.bot.send_message_event(
            room_id,
            EventType.ROOM_MESSAGE,
            {"msgtype": "m.notice", "body": text},
            txn_id=f"anywhere.policy.{entry.decision_id}",
        )
        log.info("refusal notice sent", user_id=entry.actor, rule=key, room_id=room_id)


_ACTION_WORDS = {
    "call.place": "your call",
    "call.answer": "answering the call",
    "group.create": "creating the room",
    "room.invite": "your invitation",
    "room.post": "your message",
}


def _what(action: str) -> str:
    return _ACTION_WORDS.get(action, action)


def _parse(body: Any) -> tuple[str | None, dict[str, list[str]], list[AuditEntry]]:
    if not isinstance(body, dict):
        raise BadExchange("expected a JSON object")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadExchange(f"cursor: expected a string or null, found {cursor!r}")
    active = body.get("active") or {}
    if not isinstance(active, dict) or not all(
        isinstance(day, str) and len(day) == 10 and isinstance(users, list)
        for day, users in active.items()
    ):
        raise BadExchange('active: expected {"YYYY-MM-DD": ["@user:server", ...]}')
    clean = {
        day: [u for u in users if isinstance(u, str) and u.startswith("@")][:MAX_ACTIVE]
        for day, users in active.items()
    }
    raw = body.get("decisions") or []
    if not isinstance(raw, list):
        raise BadExchange("decisions: expected a list of audit entries")
    entries = []
    for index, item in enumerate(raw[:MAX_DECISIONS]):
        try:
            entries.append(AuditEntry.from_json(item))
        except ValueError as exc:
            raise BadExchange(f"decisions[{index}]: {exc}") from None
    dropped = body.get("dropped_decisions")
    if isinstance(dropped, int) and dropped > 0:
        log.warning("the Synapse module dropped decisions it could not deliver", count=dropped)
    return cursor, clean, entries
