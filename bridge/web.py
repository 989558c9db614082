"""The bridge's web server: the appservice API (v1), health, metrics, plugin routes.

Every endpoint authenticates: the homeserver with the hs_token, the operator with
``operations.token``, people with their Matrix access token. Tokens are compared in
constant time.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .inbox import parse_json, transaction_events

if TYPE_CHECKING:
    from .config import Config
    from .inbox import Inbox
    from .pluginmanager import PluginManager


class WebHost(Protocol):
    """What the core's web app (the appservice API, ``/health``, ``/metrics``, the
    operator and Matrix-token checks) reads of the bridge: the runtime's ``Bridge``."""

    config: Config
    plugins: PluginManager
    #: the last ping the homeserver sent (its transaction id, when): the ping route sets it
    last_ping: tuple[str | None, float] | None

    @property
    def inbox(self) -> Inbox | None:
        """Where the homeserver's transactions are stored (None before start-up)."""

    async def user_for_token(self, token: str) -> str:
        """The Matrix user a client's access token belongs to; HTTPUnauthorized for a token
        the homeserver does not know."""

    async def health_checks(self) -> dict[str, bool]:
        """``{check: passed}`` for ``/health``."""


log = structlog.get_logger("anywhere.web")
BRIDGE_KEY: web.AppKey[WebHost] = web.AppKey("bridge")
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024
USER_CACHE_SECONDS = 60.0
# A token the homeserver refused is refused again without asking for this long, so one
# client retrying with a bad token does not make a whoami request each time.
REFUSED_CACHE_SECONDS = 10.0
TOKEN_CACHE_LIMIT = 10_000  # tokens remembered, each way; the oldest are forgotten first
WHOAMI_CONCURRENCY = 8  # whoami requests in flight at once; further checks wait
# Slow or oversized requests (see server_options): a connection is closed when no
# request's headers have arrived within IDLE_CONNECTION_SECONDS of its opening or of the
# last answer — longer than Synapse keeps an idle connection to the bridge (2 minutes),
# so that Synapse, not the bridge, closes those; a homeserver's request body must arrive
# within BODY_READ_SECONDS; header lines and fields are limited in size and number.
IDLE_CONNECTION_SECONDS = 150.0
BODY_READ_SECONDS = 60.0
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 100


def server_options() -> dict[str, Any]:
    """aiohttp server settings (``web.AppRunner`` keywords) against slow and oversized
    requests. aiohttp has no timeout of its own for reading a request's headers: its
    keep-alive timeout, armed when a connection opens and after each answer, closes a
    connection still waiting for a request's headers."""
    return {
        "keepalive_timeout": IDLE_CONNECTION_SECONDS,
        "max_line_size": MAX_LINE_SIZE,
        "max_field_size": MAX_FIELD_SIZE,
        "max_headers": MAX_HEADERS,
    }


async def read_body(request: web.Request) -> bytes:
    """The request's body, which must arrive within ``BODY_READ_SECONDS`` (else 408)."""
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=json.dumps(
                {
                    "errcode": "M_UNKNOWN",
                    "error": f"The request body did not arrive within {BODY_READ_SECONDS:g} s",
                }
            ),
            content_type="application/json",
        ) from None


def matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


def tokens_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def check_homeserver_token(request: web.Request, hs_token: str) -> web.Response | None:
    """None if the request carries the hs_token; otherwise the error response.

    The spec's ``Authorization: Bearer`` header is the way; the legacy ``access_token``
    query parameter is accepted alone, and where both are given they must be equal.
    """
    header_token = bearer_token(request)
    query_token = request.query.get("access_token")
    if header_token and query_token and not tokens_equal(header_token, query_token):
        return matrix_error(
            403, "M_FORBIDDEN", "The Authorization header and access_token parameter differ"
        )
    token = header_token or query_token
    if not token:
        return matrix_error(
            401, "M_UNAUTHORIZED", "Missing hs_token: send Authorization: Bearer <hs_token>"
        )
    if not tokens_equal(token, hs_token):
        return matrix_error(403, "M_FORBIDDEN", "Bad hs_token")
    return None


def require_operator(request: web.Request) -> None:
    """Raise 401/403 unless the request carries ``operations.token``."""
    bridge = request.app[BRIDGE_KEY]
    token = bearer_token(request)
    if not token:
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {
                    "errcode": "M_UNAUTHORIZED",
                    "error": "Send Authorization: Bearer <operations.token>",
                }
            ),
            content_type="application/json",
        )
    if not tokens_equal(token, bridge.config["operations.token"]):
        raise web.HTTPForbidden(
            text=json.dumps({"errcode": "M_FORBIDDEN", "error": "Bad operations token"}),
            content_type="application/json",
        )


class UnknownToken(Exception):
    """The homeserver does not know the access token."""


class AccessTokens:
    """Whose Matrix access token a request carries: asked of the homeserver
    (``whoami(token)`` returns its HTTP status and JSON body) and remembered, an answer
    for ``USER_CACHE_SECONDS`` (so revoked tokens stop working quickly) and a refusal for
    ``REFUSED_CACHE_SECONDS``. Each cache holds at most ``TOKEN_CACHE_LIMIT`` tokens (by
    their SHA-256), the oldest forgotten first; checks of the same token at the same time
    make one request, and at most ``WHOAMI_CONCURRENCY`` requests are in flight. An
    answer other than the user or 401/403 (the homeserver down or failing) is not
    remembered: the person gets a 503 and may try again."""

    def __init__(
        self,
        whoami: Callable[[str], Awaitable[tuple[int, Any]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._whoami = whoami
        self._clock = clock
        self._users: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self._refused: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._requests = asyncio.Semaphore(WHOAMI_CONCURRENCY)

    async def user_for(self, token: str) -> str:
        """The user ID; raises UnknownToken, or HTTPServiceUnavailable when the
        homeserver could not say."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        known = self._users.get(key)
        if known is not None and known[1] > now:
            return known[0]
        refused_until = self._refused.get(key)
        if refused_until is not None and refused_until > now:
            raise UnknownToken
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            user_id = await self._ask(key, token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._pending[key]
        future.set_result(user_id)
        return user_id

    async def _ask(self, key: str, token: str) -> str:
        async with self._requests:
            try:
                status, body = await self._whoami(token)
            except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
                log.warning("could not check an access token with the homeserver", error=str(exc))
                status, body = 0, None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("user_id"), str):
            self._remember(self._users, key, (body["user_id"], self._clock() + USER_CACHE_SECONDS))
            return body["user_id"]
        if status in (401, 403):
            self._remember(self._refused, key, self._clock() + REFUSED_CACHE_SECONDS)
            raise UnknownToken
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {
                    "errcode": "M_UNKNOWN",
                    "error": "The homeserver could not check your access token just now "
                    f"(HTTP {status or 'no answer'}); try again in a moment",
                }
            ),
            content_type="application/json",
        )

    @staticmethod
    def _remember(cache: collections.OrderedDict, key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > TOKEN_CACHE_LIMIT:
            cache.popitem(last=False)


async def require_matrix_user(request: web.Request) -> str:
    """Authenticate a person by their Matrix access token; returns their user ID.

    The token is checked with the homeserver (``/account/whoami``) and the answer cached
    (see ``AccessTokens``).
    """
    bridge = request.app[BRIDGE_KEY]
    token = bearer_token(request)
    if not token:
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {
                    "errcode": "M_MISSING_TOKEN",
                    "error": "Send Authorization: Bearer <your Matrix access token>",
                }
            ),
            content_type="application/json",
        )
    return await bridge.user_for_token(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return matrix_error(404, "M_UNRECOGNIZED", f"Unrecognized request: {request.path}")
    except web.HTTPMethodNotAllowed:
        return matrix_error(
            405, "M_UNRECOGNIZED", f"Unrecognized request: {request.method} {request.path}"
        )


class AppserviceRoutes:
    """The Matrix appservice API v1 that the homeserver calls."""

    def __init__(self, bridge: WebHost) -> None:
        self.bridge = bridge

    def add_to(self, app: web.Application) -> None:
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self.transaction)
        app.router.add_get("/_matrix/app/v1/users/{user_id}", self.query_user)
        app.router.add_get("/_matrix/app/v1/rooms/{alias}", self.query_room)
        app.router.add_post("/_matrix/app/v1/ping", self.ping)

    async def transaction(self, request: web.Request) -> web.Response:
        if denied := check_homeserver_token(request, self.bridge.config["appservice.hs_token"]):
            return denied
        txn_id = request.match_info["txn_id"]
        started = time.perf_counter()
        with self.bridge.inbox.receiving():
            if request.content_length and request.content_length > MAX_TRANSACTION_BYTES:
                return matrix_error(413, "M_TOO_LARGE", "Transaction body too large")
            try:
                raw_bytes = await read_body(request)
                body = parse_json(raw_bytes)
                raw = raw_bytes.decode()
            except (ValueError, UnicodeDecodeError):
                return matrix_error(400, "M_NOT_JSON", "Transaction body is not JSON")
            if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
                return matrix_error(
                    400, "M_BAD_JSON", "Transaction must be an object with 'events'"
                )
            stored = await self.bridge.inbox.store(txn_id, raw, body)
        metrics.TRANSACTION_SECONDS.observe(time.perf_counter() - started)
        if stored:
            metrics.EVENTS_RECEIVED.inc(len(transaction_events(body)))
        else:
            log.info("replayed transaction ignored", txn_id=txn_id)
        return web.Response(body=b"{}", content_type="application/json")

    async def query_user(self, request: web.Request) -> web.Response:
        if denied := check_homeserver_token(request, self.bridge.config["appservice.hs_token"]):
            return denied
        user_id = request.match_info["user_id"]
        if await self.bridge.plugins.first_result(
            "anywhere_query_user", bridge=self.bridge, user_id=user_id
        ):
            return web.json_response({})
        return matrix_error(404, "M_NOT_FOUND", f"No such user: {user_id}")

    async def query_room(self, request: web.Request) -> web.Response:
        if denied := check_homeserver_token(request, self.bridge.config["appservice.hs_token"]):
            return denied
        alias = request.match_info["alias"]
        if await self.bridge.plugins.first_result(
            "anywhere_query_room_alias", bridge=self.bridge, alias=alias
        ):
            return web.json_response({})
        return matrix_error(404, "M_NOT_FOUND", f"No such room alias: {alias}")

    async def ping(self, request: web.Request) -> web.Response:
        if denied := check_homeserver_token(request, self.bridge.config["appservice.hs_token"]):
            return denied
        try:
            body = parse_json(await read_body(request))
        except ValueError:
            body = {}
        txn = body.get("transaction_id") if isinstance(body, dict) else None
        self.bridge.last_ping = (txn, time.time())
        log.debug("pinged by homeserver", txn_id=txn)
        return web.json_response({})


async def health(request: web.Request) -> web.Response:
    require_operator(request)
    checks = await request.app[BRIDGE_KEY].health_checks()
    ready = all(checks.values())
    return web.json_response(
        {"live": True, "ready": ready, "checks": checks}, status=200 if ready else 503
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    require_operator(request)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(bridge: WebHost) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_TRANSACTION_BYTES)
    app[BRIDGE_KEY] = bridge
    AppserviceRoutes(bridge).add_to(app)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
