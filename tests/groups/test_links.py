"""Which linked files the bridge fetches: URL comparison (pure logic), and fetching from
real HTTP servers on loopback (redirects, non-public addresses)."""

from __future__ import annotations

import structlog
from aiohttp import web

from anywhere.plugins.groups.links import LinkFetcher, is_allowed

PREFIXES = ["https://up.example.org:5281/file_share", "http://files.example.org/"]


def test_links_are_compared_by_scheme_host_port_and_folder_not_by_text():
    ok = "https://up.example.org:5281/file_share/abc/photo.jpg"
    assert is_allowed(ok, PREFIXES)
    assert is_allowed("https://UP.example.org:5281/file_share/x", PREFIXES)
    assert is_allowed("http://files.example.org:80/a", PREFIXES)
    for bad in (
        "https://up.example.org:5281@127.0.0.1/file_share/x",  # user@host
        "https://up.example.org:5281/file_share@127.0.0.1:8008/x",
        "https://up.example.org:5281/file_share_other/x",  # not below the folder
        "https://up.example.org:5281/file_share/../admin",
        "https://up.example.org:5281/file_share/%2e%2e/admin",
        "http://up.example.org:5281/file_share/x",  # another scheme
        "https://up.example.org/file_share/x",  # another port
        "https://up.example.org.evil.example:5281/file_share/x",
        "http://files.example.org.evil.example/a",
        "ftp://files.example.org/a",
        "http://files.example.org:99999/a",
    ):
        assert not is_allowed(bad, PREFIXES), bad


async def serve(routes: web.RouteTableDef) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def test_redirects_to_another_host_or_port_are_not_followed():
    hits: list[str] = []
    inner = web.RouteTableDef()

    @inner.get("/secret")
    async def secret(request):
        hits.append(request.path)
        return web.Response(body=b"internal")

    inner_runner, inner_port = await serve(inner)
    outer = web.RouteTableDef()

    @outer.get("/files/away")
    async def away(request):
        raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/secret")

    @outer.get("/files/moved")
    async def moved(request):
        raise web.HTTPFound("/files/here.txt")

    @outer.get("/files/here.txt")
    async def here(request):
        return web.Response(body=b"the file", content_type="text/plain")

    outer_runner, port = await serve(outer)
    fetcher = LinkFetcher(1024, True, structlog.get_logger())
    prefixes = [f"http://127.0.0.1:{port}/files/"]
    try:
        assert await fetcher.fetch(f"http://127.0.0.1:{port}/files/away", prefixes) is None
        moved = await fetcher.fetch(f"http://127.0.0.1:{port}/files/moved", prefixes)
        assert moved is not None and moved.data == b"the file" and moved.name == "here.txt"
    finally:
        await fetcher.close()
        await outer_runner.cleanup()
        await inner_runner.cleanup()
    assert hits == []


async def test_non_public_addresses_are_refused_unless_configured():
    hits: list[str] = []
    routes = web.RouteTableDef()

    @routes.get("/files/f.txt")
    async def file(request):
        hits.append(request.path)
        return web.Response(body=b"data", content_type="text/plain")

    runner, port = await serve(routes)
    try:
        for host in ("127.0.0.1", "localhost"):
            prefixes = [f"http://{host}:{port}/files/"]
            strict = LinkFetcher(1024, False, structlog.get_logger())
            try:
                assert await strict.fetch(f"http://{host}:{port}/files/f.txt", prefixes) is None
            finally:
                await strict.close()
        assert hits == []
        allowing = LinkFetcher(1024, True, structlog.get_logger())
        try:
            url = f"http://localhost:{port}/files/f.txt"
            got = await allowing.fetch(url, [f"http://localhost:{port}/files/"])
        finally:
            await allowing.close()
        assert got is not None and got.data == b"data"
    finally:
        await runner.cleanup()
