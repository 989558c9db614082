"""The policy plugin in the bridge, end to end: a real Synapse, the bridge as a process,
matrix-nio people; rules from a file, reloaded by command and by SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

import aiohttp
import pytest
import pytest_asyncio
import yaml
from nio import RoomPreset

from anywhere.bridge.testing.stack import Stack

pytestmark = pytest.mark.e2e

RULES = """
- type: plan_threshold
  id: kr-plan
  carriers: [SKT]
- type: require_verified
  id: verify-first
  actions: [bot.command]
  methods: [code]
  scope: {users: ["@newcomer*"]}
"""
SUBSCRIBERS = """
"@caller:localhost": {carrier: SKT, carrier_country: KR, plan_price: 45000, plan_currency: KRW}
"""


INVALID_LOG = "new policy rules are invalid"
LOADED_LOG = "policy rules in force"


@pytest.fixture(scope="module")
def policy_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("policy")
    (workdir / "rules.yaml").write_text(RULES)
    (workdir / "subscribers.yaml").write_text(SUBSCRIBERS)
    settings = {
        "policy": {
            "rules_file": str(workdir / "rules.yaml"),
            "subscribers_file": str(workdir / "subscribers.yaml"),
            "verification": {"sender": "file", "outbox": str(workdir / "outbox.jsonl")},
        }
    }
    extra = {"bridge": {"permissions": {"localhost": "user", "@boss:localhost": "admin"}}}
    stack = Stack(workdir, ["basics", "policy"], settings, bridge_extra=extra)
    with stack:
        yield stack


@pytest_asyncio.fixture
async def person(policy_stack):
    """Factory: a new person with a direct chat with the bot: ``user, room = await ...``"""
    async with policy_stack.people() as new_person:

        async def make(localpart):
            user = await new_person(localpart)
            return user, await user.dm(policy_stack.bot_id)

        yield make


async def log_lines(stack, text: str, more_than: int, timeout: float = 30.0) -> int:
    """Wait until the bridge's log holds more than ``more_than`` lines containing
    ``text``; returns how many it holds."""
    deadline = time.monotonic() + timeout
    while True:
        found = stack.bridge.log_path.read_text("utf-8", "replace").count(text)
        if found > more_than:
            return found
        assert time.monotonic() < deadline, f"no new {text!r} in the log:\n{stack.bridge.tail()}"
        await asyncio.sleep(0.1)


async def ask(user, room, bot_id, text, expect):
    mark = user.mark(room)
    await user.send_text(room, text)
    reply = await user.wait_for_notice(room, bot_id, expect, start=mark)
    return reply["content"]["body"]


async def test_explain_names_the_rule_and_follows_the_network_the_person_reports(
    policy_stack, person
):
    bot = policy_stack.bot_id
    caller, room = await person("caller")
    await ask(caller, room, bot, "!network 3g", "Noted: you are on 3g")
    body = await ask(caller, room, bot, "!policy explain call.place", "Decision:")
    assert "network=3g" in body and "plan_price=45000" in body  # the facts
    assert "Decision: DENY by kr-plan" in body
    assert "switch to Wi-Fi" in body  # how to get through
    await ask(caller, room, bot, "!network wifi", "Noted: you are on wifi")
    body = await ask(caller, room, bot, "!policy explain call.place", "Decision:")
    assert "Decision: ALLOW" in body


async def test_explaining_an_unknown_action_says_so_and_lists_the_known_ones(policy_stack, person):
    caller, room = await person("caller")
    body = await ask(caller, room, policy_stack.bot_id, "!policy explain call.plase", "not an")
    assert "'call.plase' is not an action the rules know" in body
    assert "did you mean 'call.place'" in body
    assert "group.create" in body and "room.post" in body and "ALLOW" not in body


async def test_an_unverified_person_is_refused_until_verify_completes(policy_stack, person):
    bot = policy_stack.bot_id
    newcomer, room = await person("newcomer1")
    refused = await ask(newcomer, room, bot, "!ping", "not allowed")
    assert "!verify phone" in refused
    sent = await ask(newcomer, room, bot, "!verify phone 010 1234 5678", "code was sent")
    assert "ending in 78." in sent and "5678" not in sent  # two digits, not eight
    # In a direct chat the person made as a plain private chat the bot has no power to
    # redact: it says so.
    assert "please delete it yourself" in sent
    outbox = policy_stack.workdir / "outbox.jsonl"
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    code = [entry for entry in lines if entry["user_id"] == newcomer.user_id][-1]["code"]
    assert lines[-1]["to"] == "+821012345678"
    typo = await ask(newcomer, room, bot, "!verify code abc", "not a code")
    assert "No try was used; 5 tries left" in typo
    wrong = "000000" if code != "000000" else "111111"
    assert "4 tries left" in await ask(newcomer, room, bot, f"!verify code {wrong}", "not right")
    assert "3 tries left" in await ask(newcomer, room, bot, f"!verify code {wrong}", "not right")
    await ask(newcomer, room, bot, f"!verify code {code}", "verified")
    assert await ask(newcomer, room, bot, "!ping", "pong") == "pong"
    # only what is needed is kept: method, time and a salted hash, never the number
    db = sqlite3.connect(policy_stack.workdir / "bridge" / "data" / "anywhere.db")
    row = db.execute(
        "SELECT method, phone_hash FROM policy_verified WHERE user_id = ?", (newcomer.user_id,)
    ).fetchone()
    assert row[0] == "code" and row[1] and "1012345678" not in row[1]
    audit = db.execute(
        "SELECT outcome, rule_id FROM policy_audit WHERE actor = ? ORDER BY decided_at",
        (newcomer.user_id,),
    ).fetchall()
    assert audit[0] == ("require_verification", "verify-first")
    assert audit[-1][0] == "allow"


async def test_invalid_new_rules_keep_the_old_ones_by_command_and_by_sighup(policy_stack, person):
    bot = policy_stack.bot_id
    rules = policy_stack.workdir / "rules.yaml"
    boss, room = await person("boss")
    user, user_room = await person("someone")
    refused = await ask(user, user_room, bot, "!policy reload", "admin")
    assert "needs the admin permission level" in refused

    rules.write_text(RULES + "- type: plan_threshold\n  thresholds: {3g: cheap}\n")
    body = await ask(boss, room, bot, "!policy reload", "invalid")
    assert "the old ones stay in force" in body
    assert "thresholds" in body and "cheap" in body
    assert "kr-plan" in await ask(
        boss, room, bot, "!policy explain call.place @caller:localhost", "kr-plan"
    )

    refused = policy_stack.bridge.log_path.read_text("utf-8", "replace").count(INVALID_LOG)
    os.kill(policy_stack.bridge.proc.pid, signal.SIGHUP)  # still invalid: nothing changes
    await log_lines(policy_stack, INVALID_LOG, refused)  # the SIGHUP was handled: refused
    assert policy_stack.bridge.proc.poll() is None
    assert "kr-plan" in await ask(
        boss, room, bot, "!policy explain call.place @caller:localhost", "kr-plan"
    )

    rules.write_text("- type: wifi_only\n  id: wifi-only-now\n  carriers: [SKT]\n")
    loaded = policy_stack.bridge.log_path.read_text("utf-8", "replace").count(LOADED_LOG)
    os.kill(policy_stack.bridge.proc.pid, signal.SIGHUP)
    await log_lines(policy_stack, LOADED_LOG, loaded)
    body = await ask(boss, room, bot, "!policy explain call.place @caller:localhost", "Decision:")
    assert "wifi-only-now" in body and "kr-plan" not in body
    rules.write_text("# nothing yet\n")
    body = await ask(boss, room, bot, "!policy reload", "reloaded")
    assert "0 rules" in body and "nothing is restricted, every action is allowed" in body
    rules.write_text(RULES)
    await ask(boss, room, bot, "!policy reload", "reloaded")


async def test_facts_for_the_synapse_module_need_the_operator_token(policy_stack):
    url = f"{policy_stack.bridge.url}/_anywhere/policy/facts"
    params = {"user": "@caller:localhost", "action": "call.place"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params=params) as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bearer {policy_stack.bridge.ops_token}"}
        async with http.get(url, params=params, headers=headers) as resp:
            assert resp.status == 200
            facts = (await resp.json())["facts"]
        async with http.get(url, params={"user": "nonsense"}, headers=headers) as resp:
            assert resp.status == 400
    assert facts["carrier"] == "SKT" and facts["plan_price"] == 45000


async def test_a_subscriber_file_with_bad_facts_is_refused_with_the_line(policy_stack, person):
    boss, room = await person("boss")
    subscribers = policy_stack.workdir / "subscribers.yaml"
    subscribers.write_text(
        SUBSCRIBERS + '"@cheap:localhost": {carrier: skt, plan_price: "45,000"}\n'
    )
    try:
        body = await ask(boss, room, policy_stack.bot_id, "!policy reload", "invalid")
        assert "the old ones stay in force" in body
        assert "subscribers.yaml:3: @cheap:localhost.carrier" in body and "'SKT'" in body
        assert "plan_price: expected a positive number, found '45,000'" in body
    finally:
        subscribers.write_text(SUBSCRIBERS)
    await ask(boss, room, policy_stack.bot_id, "!policy reload", "reloaded")


async def test_the_module_exchange_sends_changes_since_its_cursor(policy_stack, person):
    url = f"{policy_stack.bridge.url}/_anywhere/policy/sync"
    headers = {"Authorization": f"Bearer {policy_stack.bridge.ops_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={}) as resp:
            assert resp.status == 401
        async with http.post(url, json={"decisions": [{"actor": 1}]}, headers=headers) as resp:
            assert resp.status == 400
            assert "decisions[0]: not an audit entry" in (await resp.json())["error"]
        async with http.post(url, json={"cursor": None}, headers=headers) as resp:
            first = await resp.json()
        assert first["full"] is True
        assert first["users"]["@caller:localhost"]["plan_price"] == 45000
        async with http.post(url, json={"cursor": first["cursor"]}, headers=headers) as resp:
            unchanged = await resp.json()
        assert unchanged["full"] is False and unchanged["users"] == {}

        mover, room = await person("mover")
        await ask(mover, room, policy_stack.bot_id, "!network lte", "Noted: you are on lte")
        body = {"cursor": unchanged["cursor"], "active": {"2026-01-01": ["@seen:localhost"]}}
        async with http.post(url, json=body, headers=headers) as resp:
            changed = await resp.json()
        assert changed["full"] is False
        facts = {"network": "lte", "mvoip_mb_used_this_month": 0.0, "verified_methods": []}
        assert changed["users"] == {mover.user_id: facts}
    db = sqlite3.connect(policy_stack.workdir / "bridge" / "data" / "anywhere.db")
    assert db.execute(
        "SELECT 1 FROM policy_active_user WHERE day = '2026-01-01' AND user_id = '@seen:localhost'"
    ).fetchone()


async def test_an_email_the_homeserver_verified_counts_once_the_admin_token_is_set(
    policy_stack, person
):
    stack = policy_stack
    bot = stack.bot_id
    rules = stack.workdir / "rules.yaml"
    rules.write_text(
        "- type: require_verified\n  id: email-first\n  actions: [bot.command]\n"
        "  methods: [email]\n  scope: {users: ['@mailer*']}\n"
    )
    admin = await asyncio.to_thread(stack.synapse.register_user, "hsadmin", "pw", admin=True)
    config = yaml.safe_load(stack.config_path.read_text())
    verification = config["plugins"]["settings"]["policy"]["verification"]
    verification["homeserver_admin_token"] = admin["access_token"]
    stack.config_path.write_text(yaml.safe_dump(config))
    stack.bridge.stop()
    stack.bridge.start()
    try:
        with_email = await stack.user("mailer1")
        status, _ = await asyncio.to_thread(
            stack.synapse.request,
            "PUT",
            f"/_synapse/admin/v2/users/{with_email.user_id}",
            {"threepids": [{"medium": "email", "address": "mailer1@example.org"}]},
            access_token=admin["access_token"],
        )
        assert status == 200
        await with_email.close()
        mailer, room = await person("mailer1")
        assert await ask(mailer, room, bot, "!ping", "pong") == "pong"
        assert "email" in await ask(mailer, room, bot, "!verify status", "Verified by")
        without, room2 = await person("mailer2")
        assert "not allowed" in await ask(without, room2, bot, "!ping", "not allowed")
    finally:
        rules.write_text(RULES)
        os.kill(stack.bridge.proc.pid, signal.SIGHUP)


async def test_with_network_from_providers_only_self_reports_do_not_count(policy_stack, person):
    stack = policy_stack
    caller, room = await person("caller")
    await ask(caller, room, stack.bot_id, "!network wifi", "Noted: you are on wifi")
    original = stack.config_path.read_text()
    config = yaml.safe_load(original)
    config["plugins"]["settings"]["policy"]["network_source"] = "providers"
    stack.config_path.write_text(yaml.safe_dump(config))
    stack.bridge.stop()
    stack.bridge.start()
    try:
        refused = await ask(caller, room, stack.bot_id, "!network wifi", "is off")
        assert "gets it from your carrier (network_source: providers)" in refused
        body = await ask(caller, room, stack.bot_id, "!policy explain call.place", "Decision:")
        assert "network=" not in body  # the earlier self-report is not used
        assert "Decision: DENY by kr-plan [network_unknown]" in body
    finally:
        stack.config_path.write_text(original)
        stack.bridge.stop()
        stack.bridge.start()


async def trusted_dm(user, bot_id: str) -> str:
    """A direct chat made as Element makes one (trusted_private_chat: the bot gets the
    same power level as the person, so it may redact)."""
    response = await user.client.room_create(
        invite=[bot_id], is_direct=True, preset=RoomPreset.trusted_private_chat
    )
    await user.wait_joined(response.room_id, bot_id)
    return response.room_id


async def test_the_number_is_taken_out_of_the_history_and_verifies_one_account(
    policy_stack, person
):
    bot = policy_stack.bot_id
    async with policy_stack.people() as new_person:
        first = await new_person("numbered1")
        room = await trusted_dm(first, bot)
        mark = first.mark(room)
        command = await first.send_text(room, "!verify phone +82 10 5555 0123")
        reply = await first.wait_for_notice(room, bot, "code was sent", start=mark)
        body = reply["content"]["body"]
        assert "ending in 23." in body and "0123" not in body
        assert "I removed your message with the number from this chat's history" in body
        redaction = await first.wait_for(
            room, lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == command
        )
        assert redaction["sender"] == bot

        code = last_code(policy_stack, first.user_id)
        await ask(first, room, bot, f"!verify code {code}", "verified")

        # The same number for a second account: refused before any code is sent.
        second = await new_person("numbered2")
        room2 = await trusted_dm(second, bot)
        refused = await ask(second, room2, bot, "!verify phone 010-5555-0123", "already")
        assert "already verifies another account here" in refused
        assert "at most 1" in refused
        assert last_code(policy_stack, second.user_id) is None


def last_code(stack, user_id: str) -> str | None:
    outbox = stack.workdir / "outbox.jsonl"
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    mine = [entry for entry in lines if entry["user_id"] == user_id]
    return mine[-1]["code"] if mine else None


async def test_explaining_in_a_group_room_answers_in_the_direct_chat(policy_stack, person):
    bot = policy_stack.bot_id
    asker, dm = await person("explainer")
    await ask(asker, dm, bot, "!network 3g", "Noted: you are on 3g")
    group = await asker.create_room([bot], name="team")
    await asker.wait_joined(group, bot)
    mark = asker.mark(dm)
    reply = await ask(asker, group, bot, "!policy explain call.place", "sent it to our direct")
    assert "network" not in reply.split("(")[0]
    private = await asker.wait_for_notice(dm, bot, "Decision:", start=mark)
    assert "network=3g" in private["content"]["body"] and group in private["content"]["body"]
    said_in_group = [e.get("content", {}).get("body") or "" for e in asker.timeline[group]]
    assert not any("network=3g" in text for text in said_in_group)


def restart_with_salt(stack, salt: str) -> None:
    config = yaml.safe_load(stack.config_path.read_text())
    config["plugins"]["settings"]["policy"]["verification"]["salt"] = salt
    stack.config_path.write_text(yaml.safe_dump(config))
    stack.bridge.stop()
    stack.bridge.start()


async def test_a_new_secret_keeps_old_verifications_and_rehashes_them(policy_stack, person):
    """Records and codes made with the key derived from the hs_token (no salt set) keep
    working after the operator sets a dedicated secret; the next verification re-hashes."""
    stack = policy_stack
    bot = stack.bot_id
    original = stack.config_path.read_text()
    db_path = stack.workdir / "bridge" / "data" / "anywhere.db"
    restart_with_salt(stack, "")  # as deployed before the salt existed
    try:
        async with stack.people() as new_person:
            old = await new_person("rekeyed1")
            room = await trusted_dm(old, bot)
            await ask(old, room, bot, "!verify phone +82 10 7777 0001", "code was sent")
            await ask(old, room, bot, f"!verify code {last_code(stack, old.user_id)}", "verified")
            pending = await new_person("rekeyed2")
            room2 = await trusted_dm(pending, bot)
            await ask(pending, room2, bot, "!verify phone +82 10 7777 0002", "code was sent")
            before = (
                sqlite3.connect(db_path)
                .execute("SELECT phone_hash FROM policy_verified WHERE user_id = ?", (old.user_id,))
                .fetchone()[0]
            )

            restart_with_salt(stack, "a-new-random-secret")
            # A code sent before the change still verifies.
            code = last_code(stack, pending.user_id)
            await ask(pending, room2, bot, f"!verify code {code}", "verified")
            # The old record still counts for one-number-one-account...
            intruder = await new_person("rekeyed3")
            room3 = await trusted_dm(intruder, bot)
            refused = await ask(intruder, room3, bot, "!verify phone +82 10 7777 0001", "already")
            assert "already verifies another account" in refused
            # ... and is hashed with the new key at the next verification.
            await ask(old, room, bot, "!verify phone +82 10 7777 0001", "code was sent")
            await ask(old, room, bot, f"!verify code {last_code(stack, old.user_id)}", "verified")
            after = (
                sqlite3.connect(db_path)
                .execute("SELECT phone_hash FROM policy_verified WHERE user_id = ?", (old.user_id,))
                .fetchone()[0]
            )
            assert after != before
    finally:
        stack.config_path.write_text(original)
        stack.bridge.stop()
        stack.bridge.start()


async def test_admins_read_the_audit_of_bridge_and_module_decisions(policy_stack, person):
    stack = policy_stack
    bot = stack.bot_id
    boss, room = await person("boss")
    user, user_room = await person("someone")
    assert "admin" in await ask(user, user_room, bot, "!policy audit", "admin permission")
    newcomer, newcomer_room = await person("newcomer7")
    await ask(newcomer, newcomer_room, bot, "!ping", "not allowed")  # audited by the bridge
    # A decision of the Synapse module, as its exchange delivers it.
    module_entry = {
        "decision_id": "module-test-1",
        "decided_at_ms": int(time.time() * 1000),
        "ruleset_version": "v",
        "actor": newcomer.user_id,
        "action": "call.place",
        "target": None,
        "room_id": "!r:localhost",
        "outcome": "deny",
        "rule_id": "kr-plan",
        "code": "plan_below_mvoip_threshold",
        "reason": "SKT blocks calls",
        "request": {"actor": newcomer.user_id, "context": {"source": "synapse"}},
        "verdicts": [],
        "dry_run_verdicts": [],
    }
    headers = {"Authorization": f"Bearer {stack.bridge.ops_token}"}
    async with aiohttp.ClientSession() as http:
        sync = f"{stack.bridge.url}/_anywhere/policy/sync"
        async with http.post(sync, json={"decisions": [module_entry]}, headers=headers) as resp:
            assert resp.status == 200

        body = await ask(boss, room, bot, f"!policy audit {newcomer.user_id} 1h", "decisions")
        lines = body.splitlines()
        assert lines[0] == f"The latest 2 decisions of {newcomer.user_id} since 1h, newest first:"
        assert "DENY call.place by" in lines[1] and "(synapse) kr-plan" in lines[1]
        assert "REQUIRE_VERIFICATION bot.command" in lines[2]
        assert "(bridge) verify-first" in lines[2]
        empty = await ask(boss, room, bot, f"!policy audit {newcomer.user_id} 2099-01-01", "No")
        assert empty == f"No decisions of {newcomer.user_id} since 2099-01-01 in the audit log."
        bad = await ask(boss, room, bot, "!policy audit yesterday", "not a time")
        assert "write 30m, 12h or 7d" in bad

        audit = f"{stack.bridge.url}/_anywhere/policy/audit"
        async with http.get(audit, params={"user": newcomer.user_id}) as resp:
            assert resp.status == 401
        params = {"user": newcomer.user_id, "since": "1h"}
        async with http.get(audit, params=params, headers=headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/x-ndjson"
            entries = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert [(e["source"], e["outcome"]) for e in entries] == [
            ("synapse", "deny"),
            ("bridge", "require_verification"),
        ]
        async with http.get(audit, params={"since": "soon"}, headers=headers) as resp:
            assert resp.status == 400
            assert "is not a time" in (await resp.json())["error"]
