"""End to end: Synapse enforces Anywhere's rules through the policy module, with facts
from the real bridge (``plugins/policy``: ``GET /_anywhere/policy/facts``).

One stack for the file: Synapse with the module configured, the bridge with the
``basics`` and ``policy`` plugins, matrix-nio clients as people. People report their
network and verify themselves through the bot, as they would in Element; the module
then sees the new facts in the bridge (after at most ``facts_refresh_seconds``, through
the background exchange), and the bridge records the module's refusals, tells the
person why in their direct chat, and counts the people the module saw active.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nio import RoomCreateError, RoomSendError, RoomSendResponse

from anywhere.bridge.testing.stack import MatrixUser, Stack

pytestmark = pytest.mark.e2e

MODULE = "anywhere.policy.synapse_module.AnywherePolicyModule"
P = "org.anywhere.policy."

KR_PLAN = {
    "type": "plan_threshold",
    "id": "kr-plan",
    "carriers": ["SKT", "KT", "LG U+"],
    "thresholds": {"3g": 54000, "lte": 52000},
    "currency": "KRW",
}
ATT_WIFI_ONLY = {"type": "wifi_only", "id": "att-facetime", "carriers": ["AT&T"]}
US_FCC = {"type": "fcc_2010_no_blocking", "id": "us-fcc"}
REAL_NAME = {
    # Everyone but the people of the carrier tests must verify before creating a group
    # or posting (the scope keeps the carrier people out of it).
    "type": "require_verified",
    "id": "real-name",
    "actions": ["group.create", "room.post"],
    "scope": {"users": ["@lee*"]},
}
RULES = [KR_PLAN, ATT_WIFI_ONLY, REAL_NAME]

KIM = "kim"  # SKT, 45,000 KRW: below the 3G threshold
JOE = "joe"  # AT&T, a US carrier
SUBSCRIBERS = {
    f"@{KIM}:localhost": {
        "carrier": "SKT",
        "carrier_country": "KR",
        "plan_price": 45000,
        "plan_currency": "KRW",
    },
    "@kang:localhost": {
        "carrier": "SKT",
        "carrier_country": "KR",
        "plan_price": 45000,
        "plan_currency": "KRW",
    },
    f"@{JOE}:localhost": {
        "carrier": "AT&T",
        "carrier_country": "US",
        "plan_price": 40,
        "plan_currency": "USD",
    },
}
CACHE_SECONDS = 1


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("policy")
    files = {
        "rules": folder / "policy-rules.yaml",
        "subscribers": folder / "subscribers.yaml",
        "outbox": folder / "sms-outbox.jsonl",
    }
    files["rules"].write_text(yaml.safe_dump(RULES), "utf-8")
    files["subscribers"].write_text(yaml.safe_dump(SUBSCRIBERS), "utf-8")
    return files


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, policy_files: dict[str, Path]
) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("stack"),
        ["basics", "policy"],
        settings={
            "policy": {
                "rules_file": str(policy_files["rules"]),
                "subscribers_file": str(policy_files["subscribers"]),
                "verification": {"sender": "file", "outbox": str(policy_files["outbox"])},
            }
        },
    )
    # The bridge's config (its URL and operations token) exists once Stack is built;
    # Synapse is only configured and started by stack.start(), so the module goes in now.
    ghost_prefix = stack.config["appservice"].get("ghost_prefix", "anywhere_")
    stack.synapse.extra_config["modules"] = [
        {
            "module": MODULE,
            "config": {
                "rules_file": str(policy_files["rules"]),
                "bridge_url": stack.bridge.url,
                "bridge_token": stack.config["operations"]["token"],
                "facts_refresh_seconds": 0.2,
                "breaker_seconds": 1,
                "fail_open": False,
                "ignore_users": [f"@{ghost_prefix}.*:localhost", stack.bot_id],
                "bridge_bot": stack.bot_id,
            },
        }
    ]
    with stack:
        yield stack


async def send_raw(user: MatrixUser, room_id: str, event_type: str, content: dict) -> tuple:
    """PUT an event; (HTTP status, JSON body) — the body carries the policy fields."""
    client = user.client
    path = f"/_matrix/client/v3/rooms/{room_id}/send/{event_type}/t{time.monotonic_ns()}"
    async with client.client_session.put(
        client.homeserver + path,
        json=content,
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def create_raw(user: MatrixUser, **body: Any) -> tuple:
    client = user.client
    async with client.client_session.post(
        client.homeserver + "/_matrix/client/v3/createRoom",
        json=body,
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


def call_invite_content() -> dict[str, Any]:
    return {
        "call_id": f"call{time.monotonic_ns()}",
        "version": "1",
        "lifetime": 60000,
        "offer": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"},
    }


async def call_invite(user: MatrixUser, room_id: str) -> tuple:
    return await send_raw(user, room_id, "m.call.invite", call_invite_content())


async def until(check, timeout: float = CACHE_SECONDS + 8.0, every: float = 0.25):
    """Retry ``check()`` (async, returns (ok, value)) until ok; the value of the last try."""
    deadline = time.monotonic() + timeout
    while True:
        ok, value = await check()
        if ok or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


async def command(user: MatrixUser, dm: str, bot_id: str, text: str, reply: str) -> str:
    start = user.mark(dm)
    await user.send_text(dm, text)
    event = await user.wait_for_notice(dm, bot_id, reply, start=start)
    return event["content"]["body"]


@pytest.fixture
async def person(stack: Stack):
    async with stack.people() as make:
        yield make


async def test_3g_below_the_threshold_is_refused_then_wifi_gets_through(stack, person) -> None:
    kim = await person(KIM)
    dm = await kim.dm(stack.bot_id)  # the DM is where people report their network
    await command(kim, dm, stack.bot_id, "!network 3g", "Noted: you are on 3g")
    room = await kim.create_room(name="decision tonight")

    async def refused():  # once the module has the 3G report (facts_refresh_seconds)
        status, body = await call_invite(kim, room)
        return body.get(P + "code") == "plan_below_mvoip_threshold", (status, body)

    status, body = await until(refused)
    assert status == 403, body
    assert body["errcode"] == "M_FORBIDDEN"
    assert body[P + "rule"] == "kr-plan"
    assert body[P + "code"] == "plan_below_mvoip_threshold"
    assert body[P + "outcome"] == "deny"
    reason = body[P + "reason"]
    assert "SKT blocks calls over mobile data (3G)" in reason
    assert "45,000 KRW" in reason and "!network wifi" in reason
    assert body["error"].startswith(reason) and "kr-plan" in body["error"]

    # What matrix-nio (any client) shows: the reason in the error message.
    response = await kim.client.room_send(room, "m.call.invite", call_invite_content())
    assert isinstance(response, RoomSendError)
    assert "SKT blocks calls" in response.message

    await command(kim, dm, stack.bot_id, "!network wifi", "Noted: you are on wifi")

    async def allowed():
        status, body = await call_invite(kim, room)
        return status == 200, (status, body)

    status, body = await until(allowed)
    assert status == 200, body
    assert (await kim.client.room_send(room, "m.call.invite", call_invite_content())).event_id


async def test_fcc_2010_no_blocking_vetoes_the_carrier_block(
    stack, person, policy_files: dict[str, Path]
) -> None:
    joe = await person(JOE)
    dm = await joe.dm(stack.bot_id)
    await command(joe, dm, stack.bot_id, "!network 3g", "Noted: you are on 3g")
    room = await joe.create_room(name="from the US")

    async def blocked():  # once the module has the 3G report
        status, body = await call_invite(joe, room)
        return status == 403 and body.get(P + "code") == "wifi_only", (status, body)

    status, body = await until(blocked)
    assert status == 403, body
    assert body[P + "rule"] == "att-facetime" and body[P + "code"] == "wifi_only"

    rules = policy_files["rules"]
    original = rules.read_text("utf-8")
    try:
        # The operator adds the regulation rule: the module reloads the file by itself.
        rules.write_text(yaml.safe_dump(RULES + [US_FCC]), "utf-8")

        async def allowed():
            status, body = await call_invite(joe, room)
            return status == 200, (status, body)

        status, body = await until(allowed)
        assert status == 200, body
    finally:
        rules.write_text(original, "utf-8")  # checked again at the next event (1 s apart)

    async def refused_again():
        status, body = await call_invite(joe, room)
        return status == 403, (status, body)

    status, body = await until(refused_again)
    assert status == 403 and body[P + "rule"] == "att-facetime", body


async def test_unverified_person_may_not_create_a_group_until_verified(
    stack, person, policy_files: dict[str, Path]
) -> None:
    lee = await person("lee")
    status, body = await create_raw(lee, name="urgent decision", preset="private_chat")
    assert status == 403, body
    assert body[P + "rule"] == "real-name"
    assert body[P + "outcome"] == "require_verification"
    assert body[P + "code"] == "verification_required"
    assert "!verify phone" in body["error"]  # says how to verify
    response = await lee.client.room_create(name="urgent decision")
    assert isinstance(response, RoomCreateError) and "!verify" in response.message

    # A direct chat with the bot stays possible (and posting in it): that is where
    # people verify.
    dm = await lee.dm(stack.bot_id)
    reply = await command(lee, dm, stack.bot_id, "!verify phone +821055550101", "Send !verify code")
    assert "ending in 01." in reply and "0101" not in reply
    outbox = policy_files["outbox"]
    codes = [json.loads(line) for line in outbox.read_text("utf-8").splitlines()]
    mine = [c for c in codes if c["user_id"] == lee.user_id]
    assert mine, codes
    await command(lee, dm, stack.bot_id, f"!verify code {mine[-1]['code']}", "")

    async def created():
        status, body = await create_raw(lee, name="urgent decision", preset="private_chat")
        return status == 200, (status, body)

    status, body = await until(created)
    assert status == 200, body
    sent = await lee.client.room_send(
        body["room_id"], "m.room.message", {"msgtype": "m.text", "body": "decision: go"}
    )
    assert isinstance(sent, RoomSendResponse), sent


def database(stack: Stack) -> sqlite3.Connection:
    return sqlite3.connect(stack.workdir / "bridge" / "data" / "anywhere.db")


async def until_in_log(stack: Stack, *parts: str, timeout: float = 30.0) -> str:
    """The first line of the bridge's log holding all of ``parts`` (waits for it)."""
    return await stack.bridge.wait_for_line(*parts, timeout=timeout)


async def test_a_module_refusal_reaches_the_person_once_in_their_direct_chat(stack, person) -> None:
    bot = stack.bot_id
    kang = await person("kang")
    dm = await kang.dm(bot)
    await command(kang, dm, bot, "!network 3g", "Noted: you are on 3g")
    room = await kang.create_room(name="call me")
    start = kang.mark(dm)

    async def refused():  # until the module has the 3G report: network unknown
        status, body = await call_invite(kang, room)
        return body.get(P + "code") == "plan_below_mvoip_threshold", (status, body)

    status, first = await until(refused)  # once the module has the 3G report
    assert status == 403, first
    status, second = await call_invite(kang, room)
    assert status == 403 and second[P + "rule"] == "kr-plan", second

    notice = await kang.wait_for_notice(dm, bot, "refused your call: SKT blocks", start=start)
    body = notice["content"]["body"]
    assert "SKT blocks calls over mobile data (3G)" in body and "!network wifi" in body
    assert f"decision {first[P + 'decision_id']}" in body
    # The second refusal was audited and its notice skipped: the person is told once.
    await until_in_log(stack, "already told", second[P + "decision_id"])
    await kang.sync_once()
    told = [
        e
        for e in kang.timeline[dm][start:]
        if "refused your call: SKT blocks" in e.get("content", {}).get("body", "")
    ]
    assert len(told) == 1, told

    rows = (
        database(stack)
        .execute(
            "SELECT decision_id, rule_id, request FROM policy_audit WHERE actor = ?",
            (kang.user_id,),
        )
        .fetchall()
    )
    audited = {row[0]: row for row in rows}
    for answer in (first, second):
        row = audited[answer[P + "decision_id"]]
        assert row[1] == "kr-plan"
        assert json.loads(row[2])["context"] == {"source": "synapse"}


async def test_people_active_only_where_the_bot_is_not_are_counted(stack, person) -> None:
    quiet = await person("quiet")
    room = await quiet.create_room(name="no bot here")
    await quiet.send_text(room, "just us")

    async def counted():
        row = (
            database(stack)
            .execute("SELECT day FROM policy_active_user WHERE user_id = ?", (quiet.user_id,))
            .fetchone()
        )
        return row is not None, row

    row = await until(counted, timeout=30)
    assert row == (time.strftime("%Y-%m-%d", time.gmtime()),)
