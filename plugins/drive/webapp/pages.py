"""The web app's files, under ``/_anywhere/drive/app/``: the page and its built script
and style sheet (``static/``), each with a Content-Security-Policy that lets the page run
only its own script, talk only to the bridge it came from, and be framed only by the
bridge itself and the Element origins in ``webapp_frame_ancestors``."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from anywhere.bridge.api import Host

from . import signin

APP_PREFIX = "/_anywhere/drive/app"
STATIC = Path(__file__).parent / "static"
#: The files the page is made of, and their types (nothing else is served).
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def content_security_policy(frame_ancestors: list[str]) -> str:
    ancestors = " ".join(["'self'", *frame_ancestors])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )


class AppPages:
    """Serves the built page (read once, at start) with its security headers."""

    def __init__(self, frame_ancestors: list[str]) -> None:
        self.headers = {
            "Content-Security-Policy": content_security_policy(frame_ancestors),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        self.files = {name: (STATIC / name).read_bytes() for name in FILES}

    async def serve(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(
            body=self.files[name], headers={**self.headers, "Content-Type": FILES[name]}
        )

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(f"{APP_PREFIX}/")


def add_routes(bridge: Host, app: web.Application) -> None:
    """The page, and signing in to it (open without a token: they check the password,
    login token or OpenID token themselves and answer a token for the drive's API)."""
    pages = AppPages(list(bridge.settings("drive").get("webapp_frame_ancestors") or []))
    app.router.add_get(f"{APP_PREFIX}/login", signin.login_flows)
    app.router.add_post(f"{APP_PREFIX}/login", signin.login)
    app.router.add_post(f"{APP_PREFIX}/session", signin.widget_session)
    app.router.add_get(APP_PREFIX, pages.redirect)
    app.router.add_get(f"{APP_PREFIX}/", pages.serve)
    app.router.add_get(f"{APP_PREFIX}/{{name}}", pages.serve)
