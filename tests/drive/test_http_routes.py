"""Every route of the drive's HTTP API, taken from the app's own route table: each one
refuses a missing or wrong token (so a new route without authentication fails here),
except the OpenAPI document, which holds nothing secret; every error body is JSON."""

from __future__ import annotations

import json
import string

import aiohttp
import pytest
import yaml
from aiohttp import web

from anywhere.plugins.drive import DrivePlugin
from anywhere.plugins.drive.http_api import PUBLIC_ROUTES, add_routes

from .people import PREFIX, Api

pytestmark = pytest.mark.e2e


def drive_routes() -> list[tuple[str, str]]:
    """(method, a concrete path) for every route the drive adds, HEAD included."""
    app = web.Application()
    add_routes(DrivePlugin(), app)
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info()
        pattern = info.get("formatter") or info["path"]
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name]
        routes.append((route.method, pattern.format(**dict.fromkeys(names, "1"))))
    return routes


def test_the_route_table_is_read_whole():
    routes = drive_routes()
    assert len(routes) > 25  # every route, and aiohttp's HEAD beside each GET
    assert ("PUT", f"{PREFIX}/folders/1/files/1") in routes
    assert ("HEAD", f"{PREFIX}/folders/1/files/1") in routes
    assert ("GET", f"{PREFIX}/shared/1/1/1/1/1") in routes


async def test_every_drive_route_refuses_a_missing_or_wrong_token(drive_stack):
    tried = 0
    async with aiohttp.ClientSession() as http:
        for method, path in drive_routes():
            if path in PUBLIC_ROUTES:
                continue
            for headers, errcode in (
                ({}, "M_MISSING_TOKEN"),
                ({"Authorization": "Bearer not-a-token"}, "M_UNKNOWN_TOKEN"),
                ({"Authorization": "Basic YWxpY2U6cHc="}, "M_MISSING_TOKEN"),
            ):
                url = drive_stack.bridge.url + path
                async with http.request(method, url, headers=headers, data=b"{}") as resp:
                    assert resp.status == 401, (method, path, headers, resp.status)
                    if method != "HEAD":
                        body = await resp.json()
                        assert body["errcode"] == errcode, (method, path, body)
                tried += 1
    assert tried >= 3 * 25


async def test_the_openapi_document_needs_no_token_and_holds_no_secret(drive_stack):
    assert {f"{PREFIX}/openapi.json"} == PUBLIC_ROUTES
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{drive_stack.bridge.url}{PREFIX}/openapi.json") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    document = json.loads(text)
    assert document["paths"]["/openapi.json"]["get"]["security"] == []
    assert "only this document is served without one" in document["info"]["description"]
    config = yaml.safe_load(drive_stack.config_path.read_text("utf-8"))
    secrets = [
        config["appservice"]["as_token"],
        config["appservice"]["hs_token"],
        config["operations"]["token"],
    ]
    assert all(secret and secret not in text for secret in secrets)
    for value in (drive_stack.bridge.url, str(drive_stack.workdir), drive_stack.server_name):
        assert value not in text  # nothing of this deployment either


async def test_every_error_body_is_json_416_with_its_content_range(person, drive_stack):
    alice, bob = await person(), await person()
    a, b = Api(drive_stack, alice), Api(drive_stack, bob)
    fid = await a.folder("Errors")
    await a.call("PUT", f"/folders/{fid}/files/f.txt", data=b"12345")
    await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "dir"})
    cases = [
        (a, "GET", f"/folders/{fid}/files/f.txt", {"headers": {"Range": "bytes=5-"}}, 416),
        (a, "GET", f"/folders/{fid}/files/f.txt", {"headers": {"If-Match": '"0"'}}, 412),
        (a, "GET", f"/folders/{fid}/files/gone.txt", {}, 404),
        (a, "GET", f"/folders/{fid}/files/dir", {}, 400),
        (a, "PUT", f"/folders/{fid}/files/dir", {"data": b"x"}, 409),
        (a, "POST", f"/folders/{fid}/mkdir", {"data": b"not json"}, 400),
        (a, "POST", "/folders", {"json": ["a list"]}, 400),
        (a, "PUT", f"/folders/{fid}/files/a%3Cb", {"data": b"x"}, 400),
        (a, "GET", f"/nothing-here/{fid}", {}, 404),
        (a, "PATCH", "/folders", {}, 405),
        (b, "GET", f"/folders/{fid}/list", {}, 403),
    ]
    for who, method, path, kwargs, status in cases:
        got, headers, body = await who.call(method, path, **kwargs)
        assert got == status, (method, path, got, body)
        assert headers["Content-Type"].startswith("application/json"), (method, path, headers)
        error = json.loads(body)
        assert set(error) == {"errcode", "error"} and error["error"], (method, path, error)
    _, headers, body = await a.call(
        "GET", f"/folders/{fid}/files/f.txt", headers={"Range": "bytes=5-"}
    )
    assert headers["Content-Range"] == "bytes */5"
    assert "outside the file, which has 5 bytes" in json.loads(body)["error"]
