"""``!policy``, ``!network`` and ``!verify``."""

from __future__ import annotations

import argparse
import html
import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from anywhere.bridge import Command, CommandError, EventContext, argument, command
from anywhere.bridge.commands import group
from anywhere.policy.audit import parse_since
from anywhere.policy.errors import PolicyConfigError
from anywhere.policy.facts import NETWORK_TYPES
from anywhere.policy.verification import (
    InvalidPhoneNumber,
    PendingVerification,
    SendLimited,
    VerificationLimits,
    hash_phone,
    normalize_phone,
)

from .senders import SendFailed, send_code

if TYPE_CHECKING:
    from . import PolicyPlugin

NETWORKS = NETWORK_TYPES


def build(plugin: PolicyPlugin) -> list[Command]:
    def limits() -> VerificationLimits:
        v = plugin.settings["verification"]
        return VerificationLimits(
            code_ttl=v["code_ttl"],
            max_attempts=v["max_attempts"],
            max_sends=v["max_sends"],
            retention=v["retention_days"] * 86400,
        )

    policy = group(
        "policy",
        help="Explain what the rules decide for an action; admins: reload them, read the audit",
    )

    @policy.subcommand("explain", help="What the rules decide for an action, and why")
    @argument("action", nargs="?", help="an action such as call.place")
    @argument("user", nargs="?", help="whose facts (admins; default: you)")
    async def explain(ctx: EventContext, args: argparse.Namespace) -> None:
        sender = ctx.event.sender
        if not args.action:
            raise CommandError("say which action to explain, e.g. !policy explain call.place")
        unknown = plugin.engine.ruleset.unknown_action(args.action)
        if unknown is not None:
            raise CommandError(unknown)
        user = args.user or sender
        if user != sender and not ctx.bridge.permissions.at_least(sender, "admin"):
            raise CommandError("only admins may explain decisions for someone else")
        room_id = ctx.event.room_id
        facts = await plugin.facts.gather(user, args.action, None, {"room_id": room_id})
        text = plugin.explain(user, args.action, facts, room_id)
        formatted = f"<pre>{html.escape(text)}</pre>"
        if await ctx.bridge.direct_chats.is_direct(room_id, with_user=sender):
            await ctx.reply(text, formatted)
            return
        # A person's facts (plan, network, verification) are for them only: the answer
        # goes to the asker's direct chat with the bot, never to a room others read.
        dm = await ctx.bridge.direct_chats.open_with(sender)
        await ctx.notice(dm, f"(asked in {room_id})\n{text}", formatted)
        await ctx.reply(
            "The explanation shows personal facts (plan, network, verification), so I sent "
            "it to our direct chat."
        )

    @policy.subcommand("reload", help="Read the rules again (the old ones stay if invalid)")
    async def reload(ctx: EventContext, args: argparse.Namespace) -> None:
        if not ctx.bridge.permissions.at_least(ctx.event.sender, "admin"):
            raise CommandError("reloading the rules needs the admin permission level")
        try:
            version = plugin.reload()
        except PolicyConfigError as exc:
            await ctx.reply(f"The new rules are invalid; the old ones stay in force:\n{exc}")
            return
        count = len(plugin.engine.ruleset.rules)
        empty = " There are no rules: nothing is restricted, every action is allowed."
        await ctx.reply(
            f"Policy rules reloaded (version {version}, {count} rules)."
            + (empty if not count else "")
        )

    @policy.subcommand("audit", help="The latest decisions, newest first (to your DM)")
    @argument("who", nargs="?", metavar="@user", help="only this person's decisions")
    @argument("since", nargs="?", help="only since then: 1h, 2d, 2026-01-31")
    async def audit(ctx: EventContext, args: argparse.Namespace) -> None:
        if not ctx.bridge.permissions.at_least(ctx.event.sender, "admin"):
            raise CommandError("reading the audit log needs the admin permission level")
        await _audit(plugin, ctx, [a for a in (args.who, args.since) if a])

    @command("network", help="Tell the bridge which network you are on now (for call rules)")
    @argument("network", choices=list(NETWORKS))
    async def network_cmd(ctx: EventContext, args: argparse.Namespace) -> None:
        if not plugin.facts.network_reported:
            raise CommandError(
                "your network is not taken from what you say here: this homeserver's operator "
                "gets it from your carrier (network_source: providers), so !network is off"
            )
        await plugin.facts.set_network(ctx.event.sender, args.network)
        await ctx.reply(f"Noted: you are on {args.network}.")

    verify = group("verify", help="Verify your identity with a one-time code sent to your phone")

    @verify.subcommand("status", help="How you are verified")
    async def verify_status(ctx: EventContext, args: argparse.Namespace) -> None:
        methods = await plugin.facts.verified_methods(ctx.event.sender)
        await ctx.reply(
            f"Verified by: {', '.join(methods)}."
            if methods
            else "You are not verified. Send !verify phone NUMBER to start."
        )

    @verify.subcommand("phone", help="Send a code to your phone")
    @argument("number", nargs="*", metavar="NUMBER", help="your phone number (spaces allowed)")
    async def verify_phone(ctx: EventContext, args: argparse.Namespace) -> None:
        sender = ctx.event.sender
        value = " ".join(args.number)
        if not value:
            raise CommandError("!verify phone needs a value: !verify phone +82 10 1234 5678")
        db = plugin.bridge.db
        now = time.time()
        previous = await _load_pending(db, sender)
        keys = plugin.verification_keys()
        redacted = await _redact_number(ctx)
        settings = plugin.settings["verification"]
        primary_id, primary = next(iter(keys.items()))
        try:
            phone = normalize_phone(value, settings["default_country_code"])
            await _check_accounts_per_number(plugin, sender, phone, keys, now)
            pending, code = PendingVerification.start(
                phone,
                salt=primary,
                key=primary_id,
                now=now,
                limits=limits(),
                previous=previous,
            )
        except InvalidPhoneNumber as exc:
            raise CommandError(f"{exc}{redacted}") from exc
        except SendLimited as exc:
            raise CommandError(f"{exc}{redacted}") from exc
        try:
            await send_code(plugin.bridge, settings, sender, phone, code)
        except SendFailed as exc:
            raise CommandError(
                f"the code could not be sent ({exc}); try again later{redacted}"
            ) from exc
        await _save_pending(db, sender, pending)
        await ctx.reply(
            f"A code was sent to your number ending in {phone[-2:]}. Send !verify code "
            f"CODE within {settings['code_ttl'] // 60} minutes.{redacted}"
        )

    @verify.subcommand("code", help="Give the code you received")
    @argument("code", nargs="*", metavar="CODE", help="the code")
    async def verify_code(ctx: EventContext, args: argparse.Namespace) -> None:
        sender = ctx.event.sender
        value = " ".join(args.code)
        if not value:
            raise CommandError("!verify code needs a value: !verify code 123456")
        db = plugin.bridge.db
        now = time.time()
        previous = await _load_pending(db, sender)
        keys = plugin.verification_keys()
        if previous is None:
            raise CommandError("no code is waiting; send !verify phone NUMBER first")
        salt = keys.get(previous.key_id, keys[""])
        state, outcome = previous.check(value.strip(), salt=salt, now=now, limits=limits())
        await _save_pending(db, sender, state)
        if outcome.verified:
            record = state.verified_record(now)
            others = await _accounts_with(plugin, sender, [record.phone_hash], now)
            allowed = plugin.settings["verification"]["accounts_per_number"]
            if len(others) >= allowed:
                raise CommandError(_too_many_accounts(allowed))
            await db.execute(
                "INSERT INTO policy_verified (user_id, method, verified_at, phone_hash) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET "
                "method = excluded.method, verified_at = excluded.verified_at, "
                "phone_hash = excluded.phone_hash",
                sender,
                record.method,
                int(record.verified_at * 1000),
                record.phone_hash,
            )
            await db.execute("DELETE FROM policy_pending WHERE user_id = $1", sender)
            plugin.facts.feed.touch(sender)  # the Synapse module learns it at its next exchange
        await ctx.reply(outcome.message.replace("`", ""))

    for cmd in (network_cmd, verify):
        cmd.policy_exempt = True  # never lock people out of the way to get through
    return [policy, network_cmd, verify]


AUDIT_LINES = 20


async def _audit(plugin: PolicyPlugin, ctx: EventContext, words: list[str]) -> None:
    """``!policy audit [@person] [since]``: the latest decisions of the bridge and of the
    Synapse module, newest first, in the admin's direct chat (they show people's facts)."""
    person = next((w for w in words if w.startswith("@")), None)
    others = [w for w in words if w is not person]
    if person is not None and ":" not in person:
        raise CommandError(f"{person!r} is not a user ID: write it like @kim:example.org")
    since = None
    if others:
        try:
            since = parse_since(others[0], time.time())
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    entries = await plugin.audit.recent(actor=person, since=since, limit=AUDIT_LINES)
    whose = f" of {person}" if person else ""
    after = f" since {others[0]}" if others else ""
    if not entries:
        text = f"No decisions{whose}{after} in the audit log."
    else:
        text = f"The latest {len(entries)} decisions{whose}{after}, newest first:\n" + "\n".join(
            entry.line() for entry in entries
        )
    room_id, sender = ctx.event.room_id, ctx.event.sender
    formatted = f"<pre>{html.escape(text)}</pre>"
    if await ctx.bridge.direct_chats.is_direct(room_id, with_user=sender):
        await ctx.reply(text, formatted)
        return
    await ctx.notice(await ctx.bridge.direct_chats.open_with(sender), text, formatted)
    await ctx.reply(
        "The audit shows people's decisions and facts, so I sent it to our direct chat."
    )


async def _redact_number(ctx: EventContext) -> str:
    """Take the command with the phone number out of the room's history; the sentence
    that tells the person (appended to the answer)."""
    try:
        await ctx.bridge.bot.redact(
            ctx.event.room_id, ctx.event.event_id, reason="a phone number: kept out of history"
        )
    except Exception as exc:  # no power to redact here, the homeserver refused...
        ctx.log.warning("could not redact a !verify phone command", error=str(exc))
        return (
            " I could not remove your message with the number from this chat's history "
            "(I may lack the power to): please delete it yourself."
        )
    return " I removed your message with the number from this chat's history."


async def _accounts_with(plugin, user_id: str, hashes: list[str], now: float) -> set[str]:
    """The other accounts verified (within the retention) by a number with these hashes."""
    retention = plugin.settings["verification"]["retention_days"] * 86400
    found = set()
    for phone_hash in hashes:
        rows = await plugin.bridge.db.fetch(
            "SELECT user_id FROM policy_verified WHERE phone_hash = $1 AND user_id <> $2 "
            "AND verified_at > $3",
            phone_hash,
            user_id,
            int((now - retention) * 1000),
        )
        found.update(row["user_id"] for row in rows)
    return found


def _too_many_accounts(allowed: int) -> str:
    others = "another account" if allowed == 1 else f"{allowed} other accounts"
    return (
        f"this phone number already verifies {others} here, and one number may verify at "
        f"most {allowed}. Verify with your own number; if this is your number, ask the "
        "homeserver's operator."
    )


async def _check_accounts_per_number(
    plugin, user_id: str, phone: str, keys: dict[str, bytes], now: float
) -> None:
    """Refuse before sending a code when the number already verifies as many other
    accounts as one number may (old records: hashed with the legacy key)."""
    hashes = [hash_phone(phone, salt) for salt in keys.values()]
    allowed = plugin.settings["verification"]["accounts_per_number"]
    if len(await _accounts_with(plugin, user_id, hashes, now)) >= allowed:
        raise CommandError(_too_many_accounts(allowed))


async def _load_pending(db, user_id: str) -> PendingVerification | None:
    raw = await db.fetchval("SELECT state FROM policy_pending WHERE user_id = $1", user_id)
    if not raw:
        return None
    data = json.loads(raw)
    data["send_times"] = tuple(data.get("send_times", ()))
    return PendingVerification(**data)


async def _save_pending(db, user_id: str, state: PendingVerification) -> None:
    await db.execute(
        "INSERT INTO policy_pending (user_id, state) VALUES ($1, $2) "
        "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
        user_id,
        json.dumps(asdict(state)),
    )
