"""The bridge's web server and its calls to the homeserver, in process: the bridge's real
aiohttp app, and a stand-in homeserver where a real Synapse cannot be made to answer in
a given way on cue (Synapse's ping error after an outage) or where requests are counted."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from anywhere.bridge import web as web_module
from anywhere.bridge.config import load_config
from anywhere.bridge.inbox import Inbox
from anywhere.bridge.runtime import Bridge
from anywhere.bridge.schema import CORE_MIGRATIONS
from anywhere.bridge.testing.synapse import free_port
from anywhere.bridge.web import (
    MAX_FIELD_SIZE,
    MAX_LINE_SIZE,
    REFUSED_CACHE_SECONDS,
    USER_CACHE_SECONDS,
    AccessTokens,
    UnknownToken,
    build_app,
)
from anywhere.storage import open_database, run_migrations

pytestmark = pytest.mark.asyncio(loop_scope="function")


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def bridge_with_homeserver(
    config_file, homeserver_routes: Callable[[web.Application, dict], None]
) -> AsyncIterator[tuple[Bridge, str]]:
    """A Bridge (not started: its web app served, its HTTP session open) whose
    homeserver is an aiohttp app given its routes by ``homeserver_routes(app, shared)``;
    ``shared`` holds the bridge's ``bridge_url`` and ``hs_token``."""
    shared: dict = {}
    homeserver = web.Application()
    homeserver_routes(homeserver, shared)
    async with serve(homeserver) as hs_url:
        config = load_config(config_file, environ={"ANYWHERE__HOMESERVER__URL": hs_url})
        bridge = Bridge(config)
        shared["hs_token"] = config["appservice.hs_token"]
        bridge.http = aiohttp.ClientSession()
        try:
            async with serve(build_app(bridge)) as bridge_url:
                shared["bridge_url"] = bridge_url
                yield bridge, bridge_url
        finally:
            await bridge.http.close()


def synapse_ping_after_an_outage(reach_the_bridge: bool):
    """Synapse's ping endpoint when its delivery of queued transactions is under way:
    it pings the bridge, then fails to cancel the timer that started the delivery and
    answers 502 (synapse/rest/client/appservice_ping.py, appservice/scheduler.py)."""

    def routes(app: web.Application, shared: dict) -> None:
        async def ping(request: web.Request) -> web.Response:
            body = await request.json()
            if reach_the_bridge:
                hs_token = shared["hs_token"]
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        f"{shared['bridge_url']}/_matrix/app/v1/ping",
                        json={"transaction_id": body.get("transaction_id")},
                        headers={"Authorization": f"Bearer {hs_token}"},
                    ) as resp,
                ):
                    assert resp.status == 200
                error = "AlreadyCalled: Tried to cancel an already-called event."
            else:
                error = "ClientConnectorError: Cannot connect to host"
            return web.json_response(
                {"errcode": "M_AS_PING_CONNECTION_FAILED", "error": error}, status=502
            )

        app.router.add_post("/_matrix/client/v1/appservice/{id}/ping", ping)

    return routes


@pytest.mark.parametrize("reached", [True, False])
async def test_a_homeserver_error_after_its_ping_arrived_is_no_warning(config_file, reached):
    async with bridge_with_homeserver(config_file, synapse_ping_after_an_outage(reached)) as (
        bridge,
        _,
    ):
        with structlog.testing.capture_logs() as logs:
            await bridge._ping_homeserver()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    if reached:
        assert warnings == []
        assert any(e["event"].startswith("homeserver reaches the bridge") for e in logs)
    else:  # a real failure still says what to check
        assert [w["event"] for w in warnings] == [
            "the homeserver could not reach the bridge; check appservice.address and that "
            "hs_token matches registration.yaml (anywhere doctor)"
        ]


# ----- whose access token: answers and refusals remembered, within bounds -----


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingWhoami:
    """The homeserver's whoami for the cache's unit tests: counts what it is asked."""

    def __init__(self, answers: dict[str, tuple[int, object]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.release: asyncio.Event | None = None

    async def __call__(self, token: str) -> tuple[int, object]:
        self.asked.append(token)
        if self.release is not None:
            await self.release.wait()
        return self.answers.get(token, (401, {"errcode": "M_UNKNOWN_TOKEN"}))


async def test_a_refused_token_is_refused_again_without_asking_until_it_expires():
    clock = Clock()
    whoami = CountingWhoami({"good": (200, {"user_id": "@a:x"})})
    tokens = AccessTokens(whoami, clock)
    for _ in range(3):
        with pytest.raises(UnknownToken):
            await tokens.user_for("random")
        assert await tokens.user_for("good") == "@a:x"
    assert whoami.asked == ["random", "good"]
    clock.now += REFUSED_CACHE_SECONDS + 1  # refusals are remembered briefly
    with pytest.raises(UnknownToken):
        await tokens.user_for("random")
    assert await tokens.user_for("good") == "@a:x"
    assert whoami.asked == ["random", "good", "random"]
    clock.now += USER_CACHE_SECONDS  # answers for a minute
    assert await tokens.user_for("good") == "@a:x"
    assert whoami.asked == ["random", "good", "random", "good"]


async def test_the_token_caches_stay_bounded_and_forget_the_oldest_first(monkeypatch):
    monkeypatch.setattr(web_module, "TOKEN_CACHE_LIMIT", 3)
    whoami = CountingWhoami({})
    tokens = AccessTokens(whoami, Clock())
    for n in range(5):
        with pytest.raises(UnknownToken):
            await tokens.user_for(f"t{n}")
    for n in (2, 3, 4, 0):  # the three newest are remembered, t0 was forgotten
        with pytest.raises(UnknownToken):
            await tokens.user_for(f"t{n}")
    assert whoami.asked == ["t0", "t1", "t2", "t3", "t4", "t0"]


async def test_a_failing_homeserver_is_not_remembered_as_a_refusal():
    whoami = CountingWhoami({"good": (502, "Bad Gateway")})
    tokens = AccessTokens(whoami, Clock())
    for _ in range(2):
        with pytest.raises(web.HTTPServiceUnavailable) as raised:
            await tokens.user_for("good")
        assert "try again in a moment" in raised.value.text
    assert whoami.asked == ["good", "good"]
    whoami.answers["good"] = (200, {"user_id": "@a:x"})
    assert await tokens.user_for("good") == "@a:x"


async def test_checks_of_one_token_at_the_same_time_make_one_request():
    whoami = CountingWhoami({"good": (200, {"user_id": "@a:x"})})
    whoami.release = asyncio.Event()
    tokens = AccessTokens(whoami, Clock())
    checks = [asyncio.create_task(tokens.user_for(t)) for t in ("good", "good", "bad", "bad")]
    while len(whoami.asked) < 2:  # both requests are in flight
        await asyncio.sleep(0)
    whoami.release.set()
    results = await asyncio.gather(*checks, return_exceptions=True)
    assert results[:2] == ["@a:x", "@a:x"]
    assert all(isinstance(r, UnknownToken) for r in results[2:])
    assert sorted(whoami.asked) == ["bad", "good"]


def counting_whoami_homeserver(counts: collections.Counter):
    def routes(app: web.Application, shared: dict) -> None:
        async def whoami(request: web.Request) -> web.Response:
            counts[request.headers.get("Authorization")] += 1
            return web.json_response(
                {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"}, status=401
            )

        app.router.add_get("/_matrix/client/v3/account/whoami", whoami)

    return routes


async def test_a_bridge_asks_the_homeserver_once_about_a_token_it_refused(config_file):
    counts: collections.Counter = collections.Counter()
    async with bridge_with_homeserver(config_file, counting_whoami_homeserver(counts)) as (
        bridge,
        _,
    ):
        for _ in range(5):
            with pytest.raises(web.HTTPUnauthorized) as raised:
                await bridge.user_for_token("random-token")
            assert "M_UNKNOWN_TOKEN" in raised.value.text
    assert counts == {"Bearer random-token": 1}


# ----- slow and oversized requests -----


@contextlib.asynccontextmanager
async def running_web_server(
    config_file,
    monkeypatch,
    plugins: str = "[basics, policy]",
    *,
    homeserver_url: str = "http://127.0.0.1:9",
    data_dir=None,
):
    """The bridge's web server as ``anywhere run`` starts it (``Bridge._start_web``),
    without the rest of the bridge."""
    port = free_port()
    environ = {
        "ANYWHERE__APPSERVICE__PORT": str(port),
        "ANYWHERE__PLUGINS__ENABLED": plugins,
        "ANYWHERE__HOMESERVER__URL": homeserver_url,
    }
    if data_dir is not None:
        environ["ANYWHERE__DATA_DIR"] = str(data_dir)
    config = load_config(config_file, environ=environ)
    bridge = Bridge(config)
    bridge.http = aiohttp.ClientSession()
    await bridge._start_web()
    try:
        yield bridge, port
    finally:
        await bridge._runner.cleanup()
        await bridge.http.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (bounded: a server that
    never closes fails the test instead of hanging it)."""
    return await asyncio.wait_for(reader.read(), 30)


async def test_a_connection_that_never_finishes_its_headers_is_closed(config_file, monkeypatch):
    monkeypatch.setattr(web_module, "IDLE_CONNECTION_SECONDS", 0.5)
    async with running_web_server(config_file, monkeypatch) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_a_transaction_body_that_stops_arriving_gets_a_408(
    config_file, monkeypatch, tmp_path
):
    monkeypatch.setattr(web_module, "BODY_READ_SECONDS", 0.5)
    db = await open_database(f"sqlite:{tmp_path / 'anywhere.db'}")
    await run_migrations(db, [CORE_MIGRATIONS])
    try:
        async with running_web_server(config_file, monkeypatch) as (bridge, port):
            bridge.inbox = Inbox(db, lambda event: None)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            hs_token = bridge.config["appservice.hs_token"]
            writer.write(
                b"PUT /_matrix/app/v1/transactions/slow HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {hs_token}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                + b'{"events": ['
            )
            await writer.drain()
            answer = await read_until_closed(reader)
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"did not arrive within 0.5 s" in answer
        assert await db.fetchval("SELECT COUNT(*) FROM inbox") == 0
    finally:
        await db.stop()


@pytest.mark.parametrize(
    "header",
    [b"X-Big: " + b"a" * (MAX_FIELD_SIZE + 10), b"X-" + b"a" * (MAX_LINE_SIZE + 10) + b": 1"],
)
async def test_oversized_headers_are_refused(config_file, monkeypatch, header):
    async with running_web_server(config_file, monkeypatch) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
    assert answer.split(b" ", 2)[1] in (b"400", b"431")


# ----- authentication (keep it so; every route: tests/test_e2e_core.py) -----


async def test_the_appservice_checks_its_token_before_reading_the_body(config_file, monkeypatch):
    """A request with a wrong hs_token is answered while its body has not arrived (a
    handler that read the body first would wait for it)."""
    async with running_web_server(config_file, monkeypatch) as (_, port):
        for method, path in [
            ("PUT", "/_matrix/app/v1/transactions/t1"),
            ("POST", "/_matrix/app/v1/ping"),
        ]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode()
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            assert status_line.startswith(b"HTTP/1.1 403 "), (path, status_line)


async def test_tokens_are_compared_in_constant_time(config_file, monkeypatch):
    """Every token check (hs_token, operations.token) goes through hmac.compare_digest."""
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with (
        running_web_server(config_file, monkeypatch) as (bridge, port),
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{port}"
        for n, (method, path) in enumerate(
            [
                ("PUT", "/_matrix/app/v1/transactions/t1"),
                ("GET", "/_matrix/app/v1/users/@a:x"),
                ("GET", "/_matrix/app/v1/rooms/%23a:x"),
                ("POST", "/_matrix/app/v1/ping"),
                ("GET", "/health"),
                ("GET", "/metrics"),
                ("GET", "/_anywhere/policy/facts"),
                ("POST", "/_anywhere/policy/sync"),
            ]
        ):
            token = f"guess{n}"
            headers = {"Authorization": f"Bearer {token}"}
            async with http.request(method, base + path, headers=headers, json={}) as resp:
                assert resp.status == 403, path
            assert token.encode() in compared, f"{path}: token not compared in constant time"
