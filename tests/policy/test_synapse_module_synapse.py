"""The policy module inside a real Synapse, with an in-test aiohttp server standing in
for the bridge's side of the exchange (``POST /_anywhere/policy/sync``): it counts the
exchanges, answers with every person's facts, and can fail or hang.

What a client sees is checked on the raw HTTP answers: 403 ``M_FORBIDDEN`` whose
``error`` is the rule's reason, plus ``org.anywhere.policy.*`` fields. The end-to-end test
with the real bridge is ``tests/policy_e2e/test_synapse_module.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from anywhere.bridge.testing.synapse import Synapse, free_port

pytestmark = pytest.mark.e2e

TOKEN = "facts-token-for-tests"
MODULE = "anywhere.policy.synapse_module.AnywherePolicyModule"
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
REAL_NAME = {  # its default actions: group.create, room.post, room.invite
    "type": "require_verified",
    "id": "real-name",
    "methods": ["code"],
    "scope": {"users": ["@unverified*"]},
}
RULES = [KR_PLAN, ATT, REAL_NAME]


class FactServer:
    """An aiohttp server in its own thread standing in for the bridge's sync endpoint."""

    def __init__(self) -> None:
        self.facts: dict[str, dict[str, Any]] = {}
        self.daily_active_users: int | None = None
        self.exchanges: list[dict[str, Any]] = []
        self.status = 200
        self.hang = False
        self.hung = 0  # exchanges left hanging
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.exchanges.append(await request.json())
        if self.hang:
            self.hung += 1
            await self._release.wait()  # a hung bridge: accepts, never answers
        if self.status != 200:
            return web.json_response({"error": "database down"}, status=self.status)
        answer: dict[str, Any] = {
            "cursor": f"stand-in:{len(self.exchanges)}",
            "full": True,
            "users": {user: dict(facts) for user, facts in self.facts.items()},
        }
        if self.daily_active_users is not None:
            answer["daily_active_users"] = self.daily_active_users
        return web.json_response(answer)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/_anywhere/policy/sync", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_exchanges(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the module has made ``count`` exchanges in all (observable: the
        requests this stand-in received)."""
        deadline = time.monotonic() + timeout
        while len(self.exchanges) < count:
            assert time.monotonic() < deadline, f"only {len(self.exchanges)} exchanges"
            time.sleep(0.05)

    def next_answered(self) -> None:
        """Wait until an exchange that started after now has been answered: the module
        then holds the facts as they are now (two more requests, one at a time)."""
        self.wait_exchanges(len(self.exchanges) + 2)


LOADED = "Anywhere policy: loaded rule set"
INVALID = "are invalid; rule set"


def log_count(hs: Synapse, text: str) -> int:
    return hs.log_path.read_text("utf-8", "replace").count(text)


def until_logged(hs: Synapse, text: str, more_than: int, poke: Any = None) -> str:
    """Wait until Synapse's log holds more than ``more_than`` lines with ``text``;
    ``poke()`` between looks (the module checks its rules file when it is asked)."""
    deadline = time.monotonic() + 30
    while True:
        log = hs.log_path.read_text("utf-8", "replace")
        if log.count(text) > more_than:
            return log
        assert time.monotonic() < deadline, f"{text!r} not in Synapse's log"
        if poke is not None:
            poke()
        time.sleep(0.1)


def module_config(rules_file: Path, bridge_url: str, **options: Any) -> dict[str, Any]:
    return {
        "modules": [
            {
                "module": MODULE,
                "config": {
                    "rules_file": str(rules_file),
                    "bridge_url": bridge_url,
                    "bridge_token": TOKEN,
                    "facts_refresh_seconds": 0.1,
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
    facts.wait_exchanges(2)  # the first exchange was answered: the module has facts
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


def join(hs: Synapse, inviter: dict, invitee: dict, room_id: str) -> None:
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}"
    status, body = hs.request(
        "POST",
        f"{path}/invite",
        {"user_id": invitee["user_id"]},
        access_token=inviter["access_token"],
    )
    assert status == 200, body
    status, body = hs.request("POST", f"{path}/join", {}, access_token=invitee["access_token"])
    assert status == 200, body


def text(hs: Synapse, user: dict, room_id: str, body: str = "hello") -> tuple:
    return send(hs, user, room_id, "m.room.message", {"msgtype": "m.text", "body": body})


SKT = {"carrier": "SKT", "carrier_country": "KR", "plan_price": 45000, "plan_currency": "KRW"}


def test_call_on_3g_below_the_threshold_is_refused_with_the_reason(hs, facts) -> None:
    kim = person(hs, "kim", facts, **SKT, network="3g")
    room = room_of(hs, kim)
    facts.next_answered()
    asked = len(facts.exchanges)
    status, body = call_invite(hs, kim, room)
    assert status == 403, body
    assert body["errcode"] == "M_FORBIDDEN"
    assert body[P + "rule"] == "kr-plan"
    assert body[P + "code"] == "plan_below_mvoip_threshold"
    assert body[P + "outcome"] == "deny"
    assert "SKT blocks calls over mobile data (3G)" in body[P + "reason"]
    assert body["error"].startswith(body[P + "reason"])  # every client shows it
    assert "kr-plan" in body["error"]
    assert f"decision {body[P + 'decision_id']}" in body["error"]
    # No exchange is made on the event's path: the facts are in the module already.
    assert all(e["cursor"] is not None for e in facts.exchanges[asked:])

    # Switched to Wi-Fi: allowed once the next exchange brought it (the staleness bound).
    facts.facts[kim["user_id"]]["network"] = "wifi"
    facts.next_answered()
    status, body = call_invite(hs, kim, room)
    assert status == 200, body

    # The refusal went to the bridge for the audit (and the notice), with its id.
    facts.next_answered()
    sent = [d for e in facts.exchanges for d in e["decisions"]]
    refused = [d for d in sent if d["actor"] == kim["user_id"]]
    assert [d["code"] for d in refused] == ["plan_below_mvoip_threshold"]


def test_messages_are_not_checked_when_no_rule_covers_them_for_the_sender(hs, facts) -> None:
    kim = person(hs, "kim", facts, **SKT, network="3g")
    room = room_of(hs, kim)
    assert text(hs, kim, room)[0] == 200  # real-name's scope is @unverified* only
    assert send(hs, kim, room, "m.reaction", {})[0] == 200


def test_ignored_users_are_never_checked(hs, facts) -> None:
    ghost = hs.register_user(f"anywhere_kakao_{next(_names)}", "pw")
    facts.facts[ghost["user_id"]] = {**SKT, "network": "3g"}
    room = room_of(hs, ghost)
    facts.next_answered()
    status, body = call_invite(hs, ghost, room)
    assert status == 200, body


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
    # Allowed in the end, so not logged as a refusal (the line is written before the answer).
    assert f"room.post by {lee['user_id']}" not in hs.log_path.read_text("utf-8", "replace")

    facts.facts[lee["user_id"]]["verified_methods"] = ["code"]
    facts.next_answered()
    status, body = create_room(hs, lee, name="urgent decision")
    assert status == 200, body


def test_unverified_person_cannot_post_or_invite(hs, facts) -> None:
    verified = person(hs, "unverified", facts, verified_methods=["code"])
    lee = person(hs, "unverified", facts, verified_methods=[])
    other = person(hs, "kim", facts)
    facts.next_answered()
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


def test_an_unverified_person_cannot_get_around_the_rule_by_names_topics_polls_or_bot_rooms(
    hs, facts
) -> None:
    bot = "@anywhere:localhost"
    with contextlib.suppress(Exception):
        hs.register_user("anywhere", "pw")
    verified = person(hs, "unverified", facts, verified_methods=["code"])
    lee = person(hs, "unverified", facts, verified_methods=[])
    other = person(hs, "kim", facts)
    facts.next_answered()

    # A room with only the bot is allowed (that is where people verify)...
    status, body = create_room(hs, lee, invite=[bot], is_direct=True)
    assert status == 200, body
    bot_room = body["room_id"]
    # ... but bringing anyone else into it is not.
    status, body = hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(bot_room)}/invite",
        {"user_id": other["user_id"]},
        access_token=lee["access_token"],
    )
    assert status == 403 and body[P + "code"] == "verification_required", body

    # In a group room: the name, the topic and polls are posting too.
    room = room_of(hs, verified)
    join(hs, verified, lee, room)
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/state"
    for event_type, content in (
        ("m.room.name", {"name": "mine now"}),
        ("m.room.topic", {"topic": "unverified words"}),
    ):
        status, body = hs.request(
            "PUT", f"{path}/{event_type}/", content, access_token=lee["access_token"]
        )
        assert status == 403 and body[P + "rule"] == "real-name", (event_type, body)
    poll = {
        "org.matrix.msc3381.poll.start": {
            "question": {"org.matrix.msc1767.text": "go?"},
            "kind": "org.matrix.msc3381.poll.disclosed",
            "max_selections": 1,
            "answers": [{"id": "y", "org.matrix.msc1767.text": "yes"}],
        },
        "org.matrix.msc1767.text": "go?",
    }
    for event_type in ("org.matrix.msc3381.poll.start", "m.poll.start"):
        status, body = send(hs, lee, room, event_type, poll)
        assert status == 403 and body[P + "rule"] == "real-name", (event_type, body)
    # The verified person does all of it.
    status, body = hs.request(
        "PUT", f"{path}/m.room.topic/", {"topic": "ok"}, access_token=verified["access_token"]
    )
    assert status == 200, body


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
    facts.next_answered()
    room = room_of(hs, joe)
    status, body = call_invite(hs, joe, room)
    assert status == 403 and body[P + "code"] == "wifi_only", body
    original = rules_file.read_text("utf-8")

    def poke() -> None:
        call_invite(hs, joe, room)  # the module looks at its rules file when asked

    try:
        loaded = log_count(hs, LOADED)
        rules_file.write_text(yaml.safe_dump(RULES + [FCC]), "utf-8")
        until_logged(hs, LOADED, loaded, poke)
        status, body = call_invite(hs, joe, room)
        assert status == 200, body  # the AT&T block is vetoed by us-fcc

        refused = log_count(hs, INVALID)
        rules_file.write_text("- type: plan_treshold\n", "utf-8")
        log = until_logged(hs, INVALID, refused, poke)  # looked at, and refused
        status, body = call_invite(hs, joe, room)
        assert status == 200, body  # the veto stays
        assert "stays in force" in log and "plan_threshold" in log
    finally:
        loaded = log_count(hs, LOADED)
        rules_file.write_text(original, "utf-8")
        until_logged(hs, LOADED, loaded, poke)


THRESHOLD = {"type": "threshold", "id": "kr-2007", "methods": ["code"]}


def test_a_hung_bridge_costs_one_timeout_and_ordinary_messages_still_flow(
    tmp_path: Path,
) -> None:
    """The bridge answers, then hangs: accepts the connection and never answers. The
    module's exchange times out once, in the background; the breaker keeps it from trying
    again within its period however many events come; posts (which the identity
    threshold rule cannot refuse below its threshold) pass without delay; once the facts
    are older than their bound, calls fail closed."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump([KR_PLAN, THRESHOLD]), "utf-8")
    bridge = FactServer()
    bridge.start()
    config = module_config(
        rules, bridge.url, timeout_seconds=1, breaker_seconds=3600, facts_max_age_seconds=1
    )
    try:
        with Synapse(tmp_path / "hs", extra_config=config, log_level="INFO") as hs:
            kim = hs.register_user("kim", "pw")
            bridge.facts[kim["user_id"]] = {**SKT, "network": "wifi"}
            bridge.next_answered()
            room = room_of(hs, kim)
            assert call_invite(hs, kim, room)[0] == 200  # facts in force

            bridge.hang = True
            deadline = time.monotonic() + 30
            while not bridge.hung:  # an exchange is waiting on the hung bridge
                assert time.monotonic() < deadline
                time.sleep(0.05)
            until_logged(hs, "no facts from the bridge", 0)  # and timed out: the one timeout
            for n in range(20):
                status, body = text(hs, kim, room, f"message {n}")
                assert status == 200, body

            def refused() -> bool:
                status, body = call_invite(hs, kim, room)
                return status == 403 and body[P + "code"] == "policy_facts_unavailable"

            deadline = time.monotonic() + 30
            while not refused():  # once the facts are older than facts_max_age_seconds
                assert time.monotonic() < deadline
                time.sleep(0.2)
            status, body = call_invite(hs, kim, room)
            assert status == 403 and "unreachable" in body["error"], body
            status, _ = text(hs, kim, room, "marker after the calls")
            assert status == 200
            # One timeout per breaker period, not one per event.
            assert bridge.hung == 1
    finally:
        bridge.stop()


def test_a_killed_bridge_fails_closed_for_calls_only(tmp_path: Path, rules_file: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump([KR_PLAN, THRESHOLD]), "utf-8")
    config = module_config(rules, closed, breaker_seconds=3600)
    with Synapse(tmp_path / "hs", extra_config=config, log_level="INFO") as hs:
        log = until_logged(hs, "no facts from the bridge", 0)
        assert "ConnectionRefused" in log
        kim = hs.register_user("kim", "pw")
        room = room_of(hs, kim)
        status, body = call_invite(hs, kim, room)
        assert status == 403 and body[P + "code"] == "policy_facts_unavailable", body
        assert text(hs, kim, room)[0] == 200


def test_synapse_starts_with_invalid_rules_and_keeps_the_last_good_ones(
    tmp_path: Path, facts: FactServer
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- type: plan_treshold\n  thresholds: {3g: '54,000'}\n", "utf-8")
    config = module_config(rules, facts.url)
    hs = Synapse(tmp_path / "hs", extra_config=config, log_level="INFO")
    with hs:
        # No valid rules ever: up; calls and room creation as fail_open says; posts pass.
        log = hs.log_path.read_text("utf-8", "replace")
        assert f"the rules in {rules} are invalid" in log
        assert "did you mean 'plan_threshold'" in log
        assert "no valid rules were ever loaded" in log
        kim = person(hs, "kim", facts, **SKT, network="3g")
        facts.next_answered()
        status, body = create_room(hs, kim)
        assert status == 403 and body[P + "code"] == "policy_rules_invalid", body
        admin = hs.register_user(f"admin{next(_names)}", "pw", admin=True)
        room = room_of(hs, admin)  # Synapse does not ask about its admins' rooms
        join(hs, admin, kim, room)
        assert text(hs, kim, room)[0] == 200
        status, body = call_invite(hs, kim, room)
        assert status == 403 and body[P + "code"] == "policy_rules_invalid", body
        # Fixed while running: in force (and kept as the last good copy).
        loaded = log_count(hs, LOADED)
        rules.write_text(yaml.safe_dump([KR_PLAN]), "utf-8")
        until_logged(hs, LOADED, loaded, lambda: create_room(hs, kim))
        assert text(hs, kim, room_of(hs, kim))[0] == 200
    assert (tmp_path / "rules.yaml.last-good").exists()

    # Broken again, then Synapse restarts: it is up with the last good rules.
    rules.write_text("- type: plan_treshold\n", "utf-8")
    with hs:
        log = hs.log_path.read_text("utf-8", "replace")
        assert "starting with the last rules validated" in log
        facts.next_answered()
        kim = hs.login(kim["user_id"].split(":")[0][1:], "pw")
        room = room_of(hs, kim)
        assert text(hs, kim, room)[0] == 200
        status, body = call_invite(hs, kim, room)
        assert status == 403 and body[P + "rule"] == "kr-plan", body
