"""What every drive route shares: authentication and the person's permission, errors as
JSON, entity tags and conditional requests, ranges."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from anywhere.bridge.web import bearer_token, require_matrix_user
from anywhere.storage.blobs import BlobError

from .errors import Denied, DriveError, PreconditionFailed, RangeNotSatisfiable, StaleRevision
from .model import Folder, Node
from .names import InvalidName
from .preconditions import EntityTag, Outcome, TagList, Verdict, evaluate, header_list

if TYPE_CHECKING:
    from . import DrivePlugin

PREFIX = "/_anywhere/drive/v1"
PLUGIN_KEY: web.AppKey[Any] = web.AppKey("drive_plugin")
#: Set on a request once its answer started streaming: an error after that cannot
#: become a JSON answer any more.
STARTED_KEY = "drive_response_started"
#: The command whose permission level and policy check the HTTP API applies too.
DRIVE_COMMAND = "drive"
Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"errcode": code, "error": message}, status=status, headers=headers)


def authenticated(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Authenticate the person (their Matrix access token), check that they may use the
    drive (:func:`require_permitted`), and answer every error as JSON with the right
    status."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        plugin = plugin_of(request)
        if plugin.drive is None:  # routes listen before the plugins start
            return error(503, "M_NOT_READY", "the drive is starting; try again in a moment")
        try:
            user = await person_of(request)
            await require_permitted(plugin, user)
            return await handler(request, user)
        except DriveError as exc:
            return error(exc.status, exc.code, exc.message, exc.headers)
        except InvalidName as exc:
            return error(400, "M_INVALID_PARAM", str(exc))
        except BlobError as exc:
            return error(500, "DRIVE_STORAGE", str(exc))
        except web.HTTPException as exc:
            if exc.content_type == "application/json" or exc.status < 400:
                raise
            return error(exc.status, "M_UNKNOWN", exc.text or exc.reason)
        except ConnectionError as exc:  # the client hung up (an upload cut off)
            if request.get(STARTED_KEY):
                raise
            plugin.bridge.log.info(
                "drive request cut off by the client", plugin="drive", path=request.path
            )
            return error(400, "M_BAD_REQUEST", f"the request was cut off: {exc}")
        except Exception:
            if request.get(STARTED_KEY):
                raise  # the answer is under way: aiohttp ends the connection
            plugin.bridge.log.exception("drive request failed", plugin="drive", path=request.path)
            return error(
                500,
                "M_UNKNOWN",
                "the drive failed because of an error in the bridge; the operator can find "
                "it in the bridge's log",
            )

    return wrapper


async def person_of(request: web.Request) -> str:
    """Who sends the request: their Matrix access token, or a drive session the web app
    got as a widget (see :mod:`anywhere.plugins.drive.webapp.sessions`)."""
    from .webapp.sessions import DriveSessions

    token = bearer_token(request)
    if token and DriveSessions.is_session(token):
        return DriveSessions(plugin_of(request).bridge.signer).user_for(token)
    return await require_matrix_user(request)


def refuse_drive_sessions(request: web.Request, what: str) -> None:
    """Refuse ``what`` to a short-lived drive session (the Files widget's): an OpenID token
    any widget the person approved can get, so it must not lead to lasting access such as
    an app password — only the person's own Matrix sign-in may."""
    from .webapp.sessions import DriveSessions

    token = bearer_token(request)
    if token and DriveSessions.is_session(token):
        raise Denied(
            f"{what} needs your Matrix sign-in, not a widget's drive session: open the "
            "drive's page on its own (the link in the folder room's topic) and sign in there"
        )


async def require_permitted(plugin: DrivePlugin, user: str) -> None:
    """Refuse (:class:`Denied`, with the reason) a person the bot would refuse the
    ``!drive`` command: the same permission level (``bridge.permissions``, and the
    command's level in ``bridge.command_levels``) and the same policy question
    (``bot.command``, target ``drive``)."""
    bridge = plugin.bridge
    if not bridge.permissions.at_least(user, "user"):
        raise Denied(
            f"{user} may not use this bridge (bridge.permissions gives no access): ask the "
            "bridge operator"
        )
    needed = bridge.permissions.command_level(DRIVE_COMMAND)
    if not bridge.permissions.at_least(user, needed):
        raise Denied(
            f"the drive needs the {needed} permission level, which {user} does not have: "
            "ask the bridge operator"
        )
    decision = await bridge.authorize(
        user, "bot.command", DRIVE_COMMAND, {"command": DRIVE_COMMAND, "via": "http"}
    )
    if not decision.allowed:
        raise Denied(f"the drive is not allowed: {decision.reason}")


def plugin_of(request: web.Request) -> DrivePlugin:
    return request.app[PLUGIN_KEY]


async def folder_of(request: web.Request) -> Folder:
    return await plugin_of(request).drive.access.folder(request.match_info["folder"])


def file_tag(node: Node) -> EntityTag:
    """A file's entity tag: its revision (strong: it changes with every change)."""
    return EntityTag(str(node.revision))


def etag(node: Node) -> str:
    return str(file_tag(node))


def preconditions(
    request: web.Request, tag: EntityTag | None, what: str, body_if_match: Any = None
) -> Verdict:
    """Evaluate If-Match and If-None-Match (RFC 9110 13.2.2) against the entity tag of
    what is at ``what`` now (None: nothing yet); raises :class:`PreconditionFailed`
    (412, saying which condition failed and what the file is at now). A GET or HEAD may
    get ``Outcome.NOT_MODIFIED``. ``body_if_match`` is the JSON body's ``if_match`` (a
    revision number), used when there is no If-Match header."""
    if_match = header_list(request.headers, "If-Match")
    if if_match is None and body_if_match is not None:
        raw = str(body_if_match)
        if_match = TagList.parse(raw if raw.strip().startswith(("*", '"', "W/")) else f'"{raw}"')
    if_none_match = header_list(request.headers, "If-None-Match")
    verdict = evaluate(request.method, if_match, if_none_match, tag)
    if verdict.outcome is not Outcome.FAILED:
        return verdict
    now = f"it is at {tag} now" if tag is not None else "there is nothing there"
    if verdict.field == "If-Match":
        assert if_match is not None
        if if_match.malformed:
            wanted = f'{if_match.raw!r}, which is not a list of entity tags such as "12"'
        elif if_match.any:
            wanted = "*, an existing file"
        else:
            wanted = if_match.raw
        raise StaleRevision(
            f"If-Match does not match {what}: it asks for {wanted}, and {now}; read it "
            "again and redo the change on top of it"
        )
    assert if_none_match is not None
    raise PreconditionFailed(
        f"If-None-Match: {if_none_match.raw} matches {what} ({now}), so nothing was changed"
    )


def write_revision(verdict: Verdict) -> int | None:
    """The revision a write must still find current when it is stored (the store checks
    it again, atomically), when If-Match named one."""
    return int(verdict.matched.opaque) if verdict.matched is not None else None


def node_response(node: Node, path: str, status: int = 200) -> web.Response:
    return web.json_response(node.as_json(path), status=status, headers={"ETag": etag(node)})


def not_modified(tag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": tag})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range; None for the whole
    file; raises :class:`RangeNotSatisfiable` for a range outside it."""
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
        raise RangeNotSatisfiable(
            f"the range {header.strip()} is outside the file, which has {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
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
