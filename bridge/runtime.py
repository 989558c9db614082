"""The running bridge: one config, one database, one HTTP session, one web server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import secrets
import signal
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from mautrix.appservice import AppServiceAPI, IntentAPI
from mautrix.client.state_store import MemoryStateStore
from mautrix.errors import MatrixRequestError
from mautrix.util.async_db import Database

from storage import open_database, run_migrations
from storage.database import trace_logger

from .api import Decision
from .commands import Command
from .config import Config
from .crypto import EncryptingAppServiceAPI, Encryption
from .errors import AnywhereError, ConfigError, PluginLoadError
from .inbox import Inbox
from .jobs import Jobs, collect_job_handlers
from .namespaces import Namespaces
from .pluginmanager import PluginManager
from .router import EventRouter
from .schema import CORE_MIGRATIONS
from .services import (
    HTTP_TIMEOUT,
    DirectChats,
    Extensions,
    Media,
    Permissions,
    Signer,
    bridge_info,
    keys_kept_from_before,
)
from .web import AccessTokens, UnknownToken, build_app, server_options

log = structlog.get_logger("anywhere")


class _StateStore(MemoryStateStore):
    """mautrix's memory state store with the appservice-specific registration cache."""

    def __init__(self) -> None:
        super().__init__()
        self._registered: set[str] = set()

    async def is_registered(self, user_id: str) -> bool:
        return user_id in self._registered

    async def registered(self, user_id: str) -> None:
        self._registered.add(user_id)


def load_plugins(config: Config, manager: PluginManager | None = None) -> PluginManager:
    """Load the core and the enabled plugins (see :meth:`PluginManager.load`)."""
    manager = manager or PluginManager()
    manager.load(config)
    return manager


def plugin_namespaces(config: Config, manager: PluginManager) -> dict[str, Namespaces]:
    return manager.namespaces(config)


class Bridge:
    """The running bridge. Plugins get it typed as :class:`bridge.api.Host`: the services
    (``info``, ``permissions``, ``signer``, ``direct_chats``, ``media``, ``extensions``,
    ``db``, ``http``, ``jobs``, ``log``, ``bot``, ``intent()``, ``settings()``,
    ``authorize()``), never its config or tokens."""

    def __init__(self, config: Config, plugins: PluginManager | None = None) -> None:
        self.config = config
        self.plugins = load_plugins(config, plugins)
        self.log = log.bind(appservice=config["appservice.id"])
        self.db: Database | None = None
        self.inbox: Inbox | None = None
        self.jobs: Jobs | None = None
        self.http: aiohttp.ClientSession | None = None
        self.api: AppServiceAPI | None = None
        self.router = EventRouter(self, self.plugins, self.log)
        self.dispatch = self.router.dispatch  # what the inbox hands each event to
        self._ours: dict[str, bool] = {}
        self.homeserver_ready = False
        self.last_ping: tuple[str | None, float] | None = None
        self._runner: web.AppRunner | None = None
        self.access_tokens = AccessTokens(self._whoami)
        self._stopped = asyncio.Event()
        # read on every event: looked up once
        self._domain = config["homeserver.domain"]
        self._bot_localpart = config["appservice.bot.localpart"]
        self._ghost_prefix = config["appservice.ghost_prefix"]
        # the services plugins get (bridge/api.py); the secrets stay inside them
        self.info = bridge_info(config)
        self.permissions = Permissions(config["bridge.permissions"], lambda: self.commands)
        self.signer = Signer(config["appservice.as_token"], keys_kept_from_before(config))
        self.direct_chats = DirectChats(
            lambda: self.db, lambda: self.bot, config["appservice.bot.displayname"]
        )
        self.media = Media(
            config["homeserver.url"],
            config["appservice.as_token"],
            lambda: self.http,
            is_encrypted=lambda room_id: self.encryption.is_encrypted(room_id),
        )
        self.extensions = Extensions(self.plugins.collect, self.plugins.acall_each)
        # encrypted rooms (bridge/crypto): decrypts before dispatch, encrypts the bot's sends
        self.encryption = Encryption(
            secret=config["encryption.pickle_key"],
            device_id=config["encryption.device_id"],
            user_id=config.bot_mxid,
            homeserver_url=config["homeserver.url"],
            as_token=config["appservice.as_token"],
            display_name=config["appservice.bot.displayname"],
            is_ours=self.is_ours,
            http=lambda: self.http,
            key_wait_seconds=float(config["encryption.key_wait_seconds"]),
        )
        self._encryption_start: asyncio.Task | None = None

    # ----- what plugins use -----
    def settings(self, plugin: str) -> dict[str, Any]:
        return self.config.plugin_settings(plugin)

    @property
    def bot(self) -> IntentAPI:
        assert self.api is not None, "the bridge has not started"
        return self.api.bot_intent()

    def intent(self, user_id: str) -> IntentAPI:
        assert self.api is not None, "the bridge has not started"
        return self.api.intent(user_id)

    def is_ours(self, user_id: str) -> bool:
        """True for the bot and the ghost users this bridge puppets (loop prevention)."""
        ours = self._ours.get(user_id)
        if ours is None:
            localpart, _, server = user_id.removeprefix("@").partition(":")
            ours = server == self._domain and (
                localpart == self._bot_localpart or localpart.startswith(self._ghost_prefix)
            )
            if len(self._ours) >= 10_000:  # asked for every event: remembered, within bounds
                self._ours.clear()
            self._ours[user_id] = ours
        return ours

    async def authorize(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Decision:
        """Ask the policy plugins; allow when none has an opinion."""
        decision = await self.plugins.first_result(
            "anywhere_authorize",
            bridge=self,
            actor=actor,
            action=action,
            target=target,
            context=context or {},
        )
        return Decision.of(decision)

    async def record_usage(self, user_id: str, metric: str, amount: float) -> None:
        """Tell the plugins that count usage what ``user_id`` used: the implementations of
        the policy plugin's ``anywhere_policy_record_usage`` (none when it is not
        enabled), and for one more release the deprecated ``anywhere_record_usage``."""
        for hook in ("anywhere_policy_record_usage", "anywhere_record_usage"):
            await self.plugins.acall_each(
                hook, bridge=self, user_id=user_id, metric=metric, amount=amount
            )

    async def user_for_token(self, token: str) -> str:
        """The Matrix user an access token belongs to, checked with the homeserver (see
        ``bridge.web.AccessTokens``); raises HTTPUnauthorized for a token it does not
        know, HTTPServiceUnavailable when it could not say."""
        try:
            return await self.access_tokens.user_for(token)
        except UnknownToken:
            raise web.HTTPUnauthorized(
                text='{"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown or expired access '
                'token: log in again"}',
                content_type="application/json",
            ) from None

    async def _whoami(self, token: str) -> tuple[int, Any]:
        assert self.http is not None
        url = f"{self.config['homeserver.url']}/_matrix/client/v3/account/whoami"
        async with self.http.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    # ----- life cycle -----
    async def start(self) -> None:
        await self.open()
        await self._start_web()
        await self._wait_for_homeserver()
        await self.start_plugins()
        # What start-up made (modules, config, plugins) lives as long as the process:
        # out of the cyclic collector's sight, whose full passes over it would otherwise
        # land on acknowledgements (measured under load: parsing a transaction took 125 µs
        # on average with them, 70 µs without).
        gc.freeze()
        self.inbox.start()
        self.jobs.start()
        # the device's probe comes back through the inbox: started after it
        self._encryption_start = asyncio.create_task(self.encryption.start())
        self.log.info(
            "bridge started",
            bot=self.config.bot_mxid,
            plugins=self.plugins.names(),
            pending=await self.inbox.pending_count(),
        )

    async def open(self) -> None:
        """The first part of start-up: the HTTP session, the homeserver's API, the
        database (migrated) and the inbox on it; nothing is listening or running yet."""
        self.http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        self.api = self._make_api()
        self.db = await open_database(self.config.database_url)
        migrations = [CORE_MIGRATIONS, self.encryption.migrations] + [
            m for _, m in self.plugins.call_each("anywhere_migrations") if m
        ]
        versions = await run_migrations(self.db, migrations)
        self.log.info("database ready", versions=versions)
        await self.encryption.open(self.db, self.dispatch)
        self.inbox = Inbox(
            self.db,
            self.encryption.wrap(self.dispatch),
            before_events=self.encryption.handle_transaction,
        )

    async def start_plugins(self) -> None:
        """Collect the commands, event and job handlers, and run every plugin's
        ``anywhere_startup`` (the job workers are started by the caller)."""
        self.collect_commands_and_handlers()
        self.jobs = Jobs(self.db, collect_job_handlers(self.plugins))
        for name, func in self.plugins.impls("anywhere_startup"):
            try:
                result = func(bridge=self)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} failed to start: {type(exc).__name__}: {exc}"
                ) from exc

    def _make_api(self) -> AppServiceAPI:
        api = EncryptingAppServiceAPI(
            base_url=self.config["homeserver.url"],
            bot_mxid=self.config.bot_mxid,
            token=self.config["appservice.as_token"],
            log=trace_logger("mau.as"),
            state_store=_StateStore(),
            client_session=self.http,
            default_retry_count=5,
        )
        api.encryption = self.encryption
        return api

    def build_web_app(self) -> web.Application:
        """The web server's app: the core's routes and every enabled plugin's."""
        app = build_app(self)
        for name, func in self.plugins.impls("anywhere_web_routes"):
            try:
                func(bridge=self, app=app)
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} failed to add its web routes: {exc}"
                ) from exc
        return app

    async def _start_web(self) -> None:
        app = self.build_web_app()
        self._runner = web.AppRunner(app, access_log=None, **server_options())
        await self._runner.setup()
        host, port = self.config["appservice.hostname"], self.config["appservice.port"]
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            raise ConfigError(
                "appservice.port",
                "a free port",
                port,
                f"cannot listen on {host}:{port}: {exc.strerror}",
            ) from exc
        self.log.info("web server listening", host=host, port=port)

    async def _wait_for_homeserver(self) -> None:
        """Retry with backoff until the homeserver answers and accepts the as_token."""
        deadline = time.monotonic() + float(self.config["appservice.startup_timeout"])
        delay = 0.5
        url = f"{self.config['homeserver.url']}/_matrix/client/versions"
        while True:
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status == 200:
                        break
                    problem = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise AnywhereError(
                    f"the homeserver at {self.config['homeserver.url']} did not answer within "
                    f"{self.config['appservice.startup_timeout']} s ({problem}); check "
                    "homeserver.url and that the homeserver is running"
                )
            self.log.warning(
                "homeserver not answering yet, retrying", problem=problem, retry_in=round(delay, 1)
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
        try:
            whoami = await self.bot.whoami()
        except MatrixRequestError as exc:
            raise AnywhereError(
                f"the homeserver refused the as_token ({exc.errcode}: {exc.message}); is "
                "registration.yaml listed in app_service_config_files, and was the homeserver "
                "restarted after it was added? Run `anywhere doctor`."
            ) from exc
        if whoami.user_id != self.config.bot_mxid:
            raise AnywhereError(
                f"the as_token belongs to {whoami.user_id}, not {self.config.bot_mxid}: check "
                "appservice.bot.localpart and homeserver.domain against registration.yaml"
            )
        await self._ping_homeserver()
        try:
            await self.bot.set_displayname(self.config["appservice.bot.displayname"])
        except MatrixRequestError as exc:
            self.log.warning("could not set the bot's display name", error=str(exc))
        self.homeserver_ready = True

    async def _ping_homeserver(self) -> None:
        """Ask the homeserver to ping us. Besides proving that it reaches the bridge, this
        makes Synapse deliver the transactions it queued while the bridge was down right
        away, instead of after its retry backoff (up to 8.5 minutes).

        Whether the homeserver reached the bridge is told by its ping arriving here (the
        ping route records the ping's transaction id), not by its answer alone: after an
        outage Synapse answers 502 "AlreadyCalled" when its ping did reach the bridge but
        its delivery of queued transactions was already under way (it then tries to
        cancel the timer that started it)."""
        url = (
            f"{self.config['homeserver.url']}/_matrix/client/v1/appservice/"
            f"{self.config['appservice.id']}/ping"
        )
        headers = {"Authorization": f"Bearer {self.config['appservice.as_token']}"}
        ping_id = f"anywhere-{secrets.token_hex(8)}"
        try:
            async with self.http.post(
                url,
                json={"transaction_id": ping_id},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            body, resp = {"error": str(exc)}, None
        if not isinstance(body, dict):
            body = {"error": repr(body)}
        if resp is not None and resp.status == 200:
            self.log.info("homeserver reaches the bridge", ping_ms=body.get("duration_ms"))
        elif self.last_ping is not None and self.last_ping[0] == ping_id:
            self.log.info(
                "homeserver reaches the bridge (it reported an error of its own after the "
                "ping arrived)",
                errcode=body.get("errcode"),
                error=body.get("error"),
            )
        else:
            self.log.warning(
                "the homeserver could not reach the bridge; check appservice.address and "
                "that hs_token matches registration.yaml (anywhere doctor)",
                errcode=body.get("errcode"),
                error=body.get("error"),
            )

    @property
    def commands(self) -> dict[str, Command]:
        """Every command by name and alias (the router's registry)."""
        return self.router.commands

    @property
    def handlers(self) -> dict[str, list[tuple[str, Any]]]:
        """``{event type: [(plugin, handler)]}`` (the router's registry)."""
        return self.router.handlers

    @handlers.setter
    def handlers(self, value: dict[str, list[tuple[str, Any]]]) -> None:
        self.router.handlers = value

    def collect_commands_and_handlers(self) -> None:
        self.router.collect(self.config["bridge.command_levels"])

    async def health_checks(self) -> dict[str, bool]:
        database = False
        if self.db is not None:
            try:
                database = await self.db.fetchval("SELECT 1") == 1
            except Exception:
                database = False
        return {
            "database": database,
            "homeserver": self.homeserver_ready,
            "inbox": self.inbox is not None and self.inbox.running,
            "jobs": self.jobs is not None and self.jobs.running,
        }

    async def stop(self) -> None:
        if self._encryption_start is not None:
            self._encryption_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._encryption_start
        if self.inbox is not None:
            await self.inbox.stop()
        if self.jobs is not None:
            await self.jobs.stop()  # before the plugins shut down: their jobs run again later
        self.router.flush_handled()
        for name, func in self.plugins.impls("anywhere_shutdown"):
            try:
                result = func(bridge=self)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.log.exception("plugin failed to shut down", plugin=name)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.db is not None:
            await self.db.stop()
        if self.http is not None:
            await self.http.close()
        self._stopped.set()
        self.log.info("bridge stopped")

    async def run_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(self.start())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # start-up errors surface here
                await stopping
            else:  # stopped while still starting (e.g. waiting for the homeserver)
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            stopping.cancel()
            await self.stop()
