"""The policy module inside a real Synapse, with an in-test aiohttp server standing in
for the bridge's facts endpoint (``GET /_anywhere/policy/facts``).

What a client sees is checked on the raw HTTP answers: 403 ``M_FORBIDDEN`` whose
``error`` is the rule's reason, plus ``org.anywhere.policy.*`` fields. The end-to-end test
with the real bridge is ``tests/policy_e2e/test_synapse_module.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bridge.testing.synapse import Synapse, SynapseError, free_port

pytestmark = pytest.mark.e2e

TOKEN = "facts-token-for-tests"
MODULE = "policy.synapse_module.AnywherePolicyModule"
P = "org.anywhere.policy."

KR_PLAN = {
    "type": "plan_threshold",
    "id": "kr-plan",
    "carriers": ["SKT"],
    "thresholds": {"3g": 54000, "lte": 52000},
    "currency": "KRW",
}
ATT = {"type": "wifi_only", "id": "att-facetime", "carriers": ["AT&T"]}
FCC = {"type": "fcc_2010_no_blocking", "id": "us-fcc"}
REAL_NAME = {
    "type": "require_verified",
    "id": "real-name",
    "actions": ["group.create", "room.post", "room.invite"],
    "methods": ["code"],
    "scope": {"users": ["@unverified*"]},
}
RULES = [KR_PLAN, ATT, REAL_NAME]


class FactServer:
    """An aiohttp server in its own thread serving ``{"facts": ...}`` per user."""

    def __init__(self) -> None:
        self.facts: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.requests.append(dict(request.query))
        user = request.query.get("user", "")
        if user.startswith("@broken"):
            return web.json_response({"error": "database down"}, status=503)
        return web.json_response({"facts": self.facts.get(user, {})})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/_anywhere/policy/facts", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def module_config(rules_file: Path, bridge_url: str, **options: Any) -> dict[str, Any]:
    return {
        "modules": [
            {
                "module": MODULE,
                "config": {
                    "rules_file": str(rules_file),
                    "bridge_url": bridge_url,
                    "bridge_token": TOKEN,
                    "facts_cache_seconds": 0,
                    "timeout_seconds": 2,
                    **options,
                },
            }
        ]
    }


@pytest.fixture(scope="module")
def facts() -> Iterator[FactServer]:
    server = FactServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "policy-rules.yaml"
    path.write_text(yaml.safe_dump(RULES), "utf-8")
    return path


@pytest.fixture(scope="module")
def hs(
    tmp_path_factory: pytest.TempPathFactory, facts: FactServer, rules_file: Path
) -> Iterator[Synapse]:
    synapse = Synapse(
        tmp_path_factory.mktemp("synapse"),
        extra_config=module_config(
            rules_file,
            facts.url,
            ignore_users=["@anywhere_.*:localhost"],
            bridge_bot="@anywhere:localhost",
        ),
        log_level="INFO",
    )
    synapse.start()
    yield synapse
    synapse.stop()


_names = itertools.count(1)


def person(hs: Synapse, prefix: str, facts: FactServer | None = None, **known: Any) -> dict:
    user = hs.register_user(f"{prefix}{next(_names)}", "pw")
    if facts is not None:
        facts.facts[user["user_id"]] = known
    return user


def create_room(hs: Synapse, user: dict, **body: Any) -> tuple[int, Any]:
    return hs.request(
        "POST", "/_matrix/client/v3/createRoom", body, access_token=user["access_token"]
    )


def room_of(hs: Synapse, user: dict) -> str:
    status, body = create_room(hs, user)
    assert status == 200, body
    return body["room_id"]


def send(hs: Synapse, user: dict, room_id: str, event_type: str, content: dict) -> tuple:
    txn = f"t{time.monotonic_ns()}"
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/{event_type}/{txn}"
    return hs.request("PUT", path, content, access_token=user["access_token"])


def call_invite(hs: Synapse, user: dict, room_id: str) -> tuple:
    content = {
        "call_id": f"c{time.monotonic_ns()}",
        "version": "1",
        "lifetime": 60000,
        "offer": {"type": "offer", "sdp": "v=0\r\n"},
    }
    return send(hs, user, room_id, "m.call.invite", content)


def text(hs: Synapse, user: dict, room_id: str, body: str = "hello") -> tuple:
    return send(hs, user, room_id, "m.room.message", {"msgtype": "m.text", "body": body})


SKT = {"carrier": "SKT", "carrier_country": "KR", "plan_price": 45000, "plan_currency": "KRW"}


def test_call_on_3g_below_the_threshold_is_refused_with_the_reason(hs, facts) -> None:
    kim = person(hs, "kim", facts, **SKT, network="3g")
    room = room_of(hs, kim)
    facts.requests.clear()
    status, body = call_invite(hs, kim, room)
    assert status == 403, body
    assert body["errcode"] == "M_FORBIDDEN"
    assert body[P + "rule"] == "kr-plan"
    assert body[P + "code"] == "plan_below_mvoip_threshold"
    assert body[P + "outcome"] == "deny"
    assert "SKT blocks calls over mobile data (3G)" in body[P + "reason"]
    assert body["error"].startswith(body[P + "reason"])  # every client shows it
    assert "kr-plan" in body["error"]
    assert facts.requests == [{"user": kim["user_id"], "action": "call.place", "room": room}]

    facts.facts[kim["user_id"]]["network"] = "wifi"
    status, body = call_invite(hs, kim, room)
    assert status == 200, body


def test_messages_are_not_checked_when_no_rule_covers_them_for_the_sender(hs, facts) -> None:
    kim = person(hs, "kim", facts, **SKT, network="3g")
    room = room_of(hs, kim)
    assert text(hs, kim, room)[0] == 200  # real-name's scope is @unverified* only
    assert send(hs, kim, room, "m.reaction", {})[0] == 200


def test_ignored_users_are_never_checked(hs, facts) -> None:
    ghost = hs.register_user(f"anywhere_kakao_{next(_names)}", "pw")
    facts.facts[ghost["user_id"]] = {**SKT, "network": "3g"}
    room = room_of(hs, ghost)
    facts.requests.clear()
    status, body = call_invite(hs, ghost, room)
    assert status == 200, body
    assert facts.requests == []


def test_unverified_person_cannot_create_a_group_but_can_dm_the_bot(hs, facts) -> None:
    bot = hs.register_user("anywhere", "pw")
    lee = person(hs, "unverified", facts, verified_methods=[])
    status, body = create_room(hs, lee, name="urgent decision")
    assert status == 403, body
    assert body[P + "rule"] == "real-name"
    assert body[P + "outcome"] == "require_verification"
    assert body[P + "code"] == "verification_required"
    assert "!verify" in body["error"]

    # Talking to the bridge's bot is how people verify: always allowed.
    status, body = create_room(hs, lee, invite=[bot["user_id"]], is_direct=True)
    assert status == 200, body
    dm = body["room_id"]
    assert text(hs, lee, dm, "!verify phone +82 10 1234 5678")[0] == 200

    facts.facts[lee["user_id"]]["verified_methods"] = ["code"]
    status, body = create_room(hs, lee, name="urgent decision")
    assert status == 200, body


def test_unverified_person_cannot_post_or_invite(hs, facts) -> None:
    verified = person(hs, "unverified", facts, verified_methods=["code"])
    lee = person(hs, "unverified", facts, verified_methods=[])
    other = person(hs, "kim", facts)
    room = room_of(hs, verified)
    status, body = hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/invite",
        {"user_id": lee["user_id"]},
        access_token=verified["access_token"],
    )
    assert status == 200, body
    status, body = hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/join",
        {},
        access_token=lee["access_token"],
    )
    assert status == 200, body

    status, body = text(hs, lee, room)
    assert status == 403 and body[P + "rule"] == "real-name", body
    assert "!verify" in body["error"]

    status, body = hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/invite",
        {"user_id": other["user_id"]},
        access_token=lee["access_token"],
    )
    assert status == 403 and body[P + "code"] == "verification_required", body


def test_bridge_error_refuses_the_action(hs, facts) -> None:
    broken = person(hs, "broken", facts)
    room = room_of(hs, broken)
    status, body = call_invite(hs, broken, room)
    assert status == 403, body
    assert body[P + "code"] == "policy_facts_unavailable"
    assert body[P + "rule"] is None


def test_rules_file_reload_puts_a_veto_in_force_and_ignores_invalid_rules(
    hs, facts, rules_file: Path
) -> None:
    joe = person(
        hs,
        "joe",
        facts,
        carrier="AT&T",
        carrier_country="US",
        plan_price=30,
        plan_currency="USD",
        network="3g",
    )
    room = room_of(hs, joe)
    status, body = call_invite(hs, joe, room)
    assert status == 403 and body[P + "code"] == "wifi_only", body
    original = rules_file.read_text("utf-8")
    try:
        rules_file.write_text(yaml.safe_dump(RULES + [FCC]), "utf-8")
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.3)
            status, body = call_invite(hs, joe, room)
            if status == 200 or time.monotonic() > deadline:
                break
        assert status == 200, body  # the AT&T block is vetoed by us-fcc

        rules_file.write_text("- type: plan_treshold\n", "utf-8")
        time.sleep(1.3)
        status, body = call_invite(hs, joe, room)
        assert status == 200, body  # the invalid file was refused: the veto stays
        log = hs.log_path.read_text("utf-8", "replace")
        assert "stays in force" in log and "plan_threshold" in log
    finally:
        rules_file.write_text(original, "utf-8")
        time.sleep(1.2)


def test_bridge_unreachable_fails_closed(tmp_path: Path, rules_file: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with Synapse(tmp_path / "hs", extra_config=module_config(rules_file, closed)) as hs:
        kim = hs.register_user("kim", "pw")
        room = room_of(hs, kim)
        started = time.monotonic()
        status, body = call_invite(hs, kim, room)
        assert status == 403, body
        assert body[P + "code"] == "policy_facts_unavailable"
        assert "unreachable" in body["error"]
        assert time.monotonic() - started < 2
        # Actions no rule covers do not need the bridge.
        assert text(hs, kim, room)[0] == 200
        assert "ConnectionRefused" in hs.log_path.read_text("utf-8", "replace")


def test_synapse_refuses_to_start_with_invalid_rules(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("- type: plan_treshold\n  thresholds: {3g: '54,000'}\n", "utf-8")
    hs = Synapse(tmp_path / "hs", extra_config=module_config(bad, "http://127.0.0.1:9"))
    with pytest.raises(SynapseError) as info:
        hs.start()
    message = str(info.value)
    assert "Anywhere policy module" in message
    assert "did you mean 'plan_threshold'" in message
