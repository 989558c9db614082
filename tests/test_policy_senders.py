"""Verification codes reach people through a pluggable sender; the HTTP one posts to an
SMS gateway (here a local aiohttp server standing in for the gateway)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from anywhere.plugins.policy.senders import SendFailed, send_code


class FakeBridge:
    def __init__(self, http):
        self.http = http


@pytest.fixture
async def gateway():
    received = []

    async def sms(request):
        if request.headers.get("Authorization") != "Bearer gw-secret":
            return web.Response(status=401)
        received.append(await request.json())
        return web.json_response({"queued": True})

    app = web.Application()
    app.router.add_post("/sms", sms)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/sms", received
    await runner.cleanup()


def settings(**overrides):
    base = {"sender": "http", "http_url": "", "http_token": "gw-secret", "outbox": ""}
    return base | overrides


async def test_the_http_sender_posts_the_code_to_the_gateway(gateway):
    url, received = gateway
    async with aiohttp.ClientSession() as http:
        await send_code(
            FakeBridge(http), settings(http_url=url), "@kim:example.kr", "+821012345678", "424242"
        )
    assert received == [
        {"to": "+821012345678", "text": "Your Anywhere verification code is 424242"}
    ]


async def test_a_gateway_refusal_is_a_clear_error(gateway):
    url, _ = gateway
    async with aiohttp.ClientSession() as http:
        with pytest.raises(SendFailed, match="HTTP 401"):
            await send_code(
                FakeBridge(http),
                settings(http_url=url, http_token="wrong"),
                "@kim:example.kr",
                "+821012345678",
                "424242",
            )


async def test_the_file_sender_appends_one_json_line_per_code(tmp_path):
    outbox = tmp_path / "codes" / "outbox.jsonl"
    for code in ("111111", "222222"):
        await send_code(
            None,
            settings(sender="file", outbox=str(outbox)),
            "@kim:example.kr",
            "+821012345678",
            code,
        )
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [line["code"] for line in lines] == ["111111", "222222"]
