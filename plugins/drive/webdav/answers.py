"""What every ``/dav/`` method shares: its error, reading a request's XML body, and
plain-text and multistatus answers."""

from __future__ import annotations

from aiohttp import web

from . import xml


class DavError(Exception):
    """A WebDAV answer other than the drive's own errors: a status, a message for the
    person, and optionally an XML ``<D:error>`` body."""

    def __init__(self, status: int, message: str, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.body = status, message, body


def text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


def multistatus(responses: list[str]) -> web.Response:
    return web.Response(
        status=207, body=xml.multistatus(responses), content_type="application/xml",
        charset="utf-8",
    )  # fmt: skip


async def small_body(request: web.Request) -> bytes:
    """The whole XML body of a request (at most ``xml.MAX_BODY`` bytes, else 413)."""
    too_large = DavError(413, f"a WebDAV XML body may have at most {xml.MAX_BODY} bytes")
    if request.content_length and request.content_length > xml.MAX_BODY:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > xml.MAX_BODY:
            raise too_large
    return bytes(body)
