"""What every drive route shares: authentication, errors as JSON, revisions, ranges."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.web import require_matrix_user
from storage.blobs import BlobError

from .errors import DriveError
from .model import Folder, Node
from .names import InvalidName

if TYPE_CHECKING:
    from . import DrivePlugin

PREFIX = "/_anywhere/drive/v1"
PLUGIN_KEY: web.AppKey[Any] = web.AppKey("drive_plugin")
Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"errcode": code, "error": message}, status=status)


def authenticated(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Authenticate the person (their Matrix access token) and turn drive errors into
    JSON answers with the right status."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if plugin_of(request).drive is None:  # routes listen before the plugins start
            return error(503, "M_NOT_READY", "the drive is starting; try again in a moment")
        user = await require_matrix_user(request)
        try:
            return await handler(request, user)
        except DriveError as exc:
            return error(exc.status, exc.code, exc.message)
        except InvalidName as exc:
            return error(400, "M_INVALID_PARAM", str(exc))
        except BlobError as exc:
            return error(500, "DRIVE_STORAGE", str(exc))

    return wrapper


def plugin_of(request: web.Request) -> DrivePlugin:
    return request.app[PLUGIN_KEY]


async def folder_of(request: web.Request) -> Folder:
    return await plugin_of(request).drive.access.folder(request.match_info["folder"])


def if_match(request: web.Request, body: dict[str, Any] | None = None) -> int | None:
    """The revision a write is based on: ``If-Match: "12"`` (or ``if_match`` in JSON)."""
    raw = request.headers.get("If-Match")
    if raw is None and body is not None and body.get("if_match") is not None:
        raw = str(body["if_match"])
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise DriveError(f'If-Match must be a revision number such as "12", not {raw!r}')
    return int(value)


def etag(node: Node) -> str:
    return f'"{node.revision}"'


def node_response(node: Node, path: str, status: int = 200) -> web.Response:
    return web.json_response(node.as_json(path), status=status, headers={"ETag": etag(node)})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range; None for the whole
    file; raises ``HTTPRequestRangeNotSatisfiable`` for a range outside it."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # multiple or malformed ranges: answer with the whole file (RFC 9110)
    first, last = match.groups()
    if first == "":
        length = int(last)
        start, end = max(0, size - length), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise DriveError("the request body must be JSON") from exc
    if not isinstance(body, dict):
        raise DriveError("the request body must be a JSON object")
    return body


def required(body: dict[str, Any], key: str, kind: type = str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind):
        raise DriveError(f"{key!r} is required ({kind.__name__})")
    return value
