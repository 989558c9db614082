"""The bridge's life cycle: the ordered start-up and shutdown of its parts (HTTP session,
homeserver API, database, inbox, job workers, encryption, web server, plugins), waiting
for the homeserver, and the health state ``/health`` reports.

:class:`Lifecycle` owns the running parts; :class:`anywhere.bridge.runtime.Bridge` (the Host the
plugins see) hands it what it needs and reads the parts through it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from mautrix.appservice import AppServiceAPI
from mautrix.client.state_store import MemoryStateStore
from mautrix.errors import MatrixRequestError
from mautrix.util.async_db import Database

from anywhere.storage import open_database, run_migrations
from anywhere.storage.database import trace_logger

from .api import Host
from .config import Config
from .crypto import EncryptingAppServiceAPI, Encryption
from .errors import AnywhereError, ConfigError, PluginLoadError
from .inbox import Inbox
from .jobs import Jobs, collect_job_handlers
from .pluginmanager import PluginManager
from .router import EventRouter
from .schema import CORE_MIGRATIONS
from .services import HTTP_TIMEOUT
from .web import WebHost, build_app, server_options


class _StateStore(MemoryStateStore):
    """mautrix's memory state store with the appservice-specific registration cache."""

    def __init__(self) -> None:
        super().__init__()
        self._registered: set[str] = set()

    async def is_registered(self, user_id: str) -> bool:
        return user_id in self._registered

    async def registered(self, user_id: str) -> None:
        self._registered.add(user_id)


class LifecycleHost(Host, WebHost, Protocol):
    """What the lifecycle is given as ``host`` and hands on without reading any of it:
    to the plugins' ``anywhere_startup``, ``anywhere_shutdown`` and ``anywhere_web_routes``
    hooks (a :class:`~anywhere.bridge.api.Host`) and to the core's web app (a
    :class:`~anywhere.bridge.web.WebHost`). The runtime's ``Bridge`` is one."""


class Lifecycle:
    """Starts the bridge's parts in order and stops them in the reverse order.

    ``host`` is what the plugins' ``anywhere_startup``/``anywhere_shutdown``/
    ``anywhere_web_routes`` hooks and the web app are given (:class:`LifecycleHost`, the
    Bridge); ``on_event`` is where the inbox hands each event (the router's dispatch)."""

    def __init__(
        self,
        host: LifecycleHost,
        config: Config,
        plugins: PluginManager,
        router: EventRouter,
        encryption: Encryption,
        log: Any,
    ) -> None:
        self.host = host
        self.config = config
        self.plugins = plugins
        self.router = router
        self.encryption = encryption
        self.log = log
        self.on_event: Callable[[Any], Any] = router.dispatch
        # the running parts (None until opened)
        self.db: Database | None = None
        self.inbox: Inbox | None = None
        self.jobs: Jobs | None = None
        self.http: aiohttp.ClientSession | None = None
        self.api: AppServiceAPI | None = None
        self.runner: web.AppRunner | None = None
        # health: whether the homeserver answered and accepted the as_token; the last
        # ping the homeserver sent (its transaction id, when)
        self.homeserver_ready = False
        self.last_ping: tuple[str | None, float] | None = None
        self.stopped = asyncio.Event()
        self._encryption_start: asyncio.Task | None = None

    # ----- start-up, in order -----
    async def start(self) -> None:
        await self.open()
        await self.start_web()
        await self.wait_for_homeserver()
        await self.start_plugins()
        # What start-up made (modules, config, plugins) lives as long as the process:
        # out of the cyclic collector's sight, whose full passes over it would otherwise
        # land on acknowledgements (measured under load: parsing a transaction took 125 µs
        # on average with them, 70 µs without).
        gc.freeze()
        assert self.inbox is not None and self.jobs is not None
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
        self.api = self.make_api()
        self.db = await open_database(self.config.database_url)
        migrations = [CORE_MIGRATIONS, self.encryption.migrations] + [
            m for _, m in self.plugins.call_each("anywhere_migrations") if m
        ]
        versions = await run_migrations(self.db, migrations)
        self.log.info("database ready", versions=versions)
        await self.encryption.open(self.db, self.on_event)
        self.inbox = Inbox(
            self.db,
            self.encryption.wrap(self.on_event),
            before_events=self.encryption.handle_transaction,
            before_save=self.encryption.before_position_saved,
            after_store=self.encryption.ahead,
        )

    async def start_plugins(self) -> None:
        """Collect the commands, event and job handlers, and run every plugin's
        ``anywhere_startup`` (the job workers are started by the caller)."""
        self.router.collect(self.config["bridge.command_levels"])
        self.jobs = Jobs(self.db, collect_job_handlers(self.plugins))
        for name, func in self.plugins.impls("anywhere_startup"):
            try:
                result = func(bridge=self.host)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} failed to start: {type(exc).__name__}: {exc}"
                ) from exc

    def make_api(self) -> AppServiceAPI:
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

    # ----- the web server -----
    def build_web_app(self) -> web.Application:
        """The web server's app: the core's routes and every enabled plugin's."""
        app = build_app(self.host)
        for name, func in self.plugins.impls("anywhere_web_routes"):
            try:
                func(bridge=self.host, app=app)
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} failed to add its web routes: {exc}"
                ) from exc
        return app

    async def start_web(self) -> None:
        app = self.build_web_app()
        self.runner = web.AppRunner(app, access_log=None, **server_options())
        await self.runner.setup()
        host, port = self.config["appservice.hostname"], self.config["appservice.port"]
        try:
            await web.TCPSite(self.runner, host, port).start()
        except OSError as exc:
            raise ConfigError(
                "appservice.port",
                "a free port",
                port,
                f"cannot listen on {host}:{port}: {exc.strerror}",
            ) from exc
        self.log.info("web server listening", host=host, port=port)

    # ----- the homeserver -----
    async def wait_for_homeserver(self) -> None:
        """Retry with backoff until the homeserver answers and accepts the as_token."""
        assert self.http is not None and self.api is not None
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
        bot = self.api.bot_intent()
        try:
            whoami = await bot.whoami()
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
        await self.ping_homeserver()
        try:
            await bot.set_displayname(self.config["appservice.bot.displayname"])
        except MatrixRequestError as exc:
            self.log.warning("could not set the bot's display name", error=str(exc))
        self.homeserver_ready = True

    async def ping_homeserver(self) -> None:
        """Ask the homeserver to ping us. Besides proving that it reaches the bridge, this
        makes Synapse deliver the transactions it queued while the bridge was down right
        away, instead of after its retry backoff (up to 8.5 minutes).

        Whether the homeserver reached the bridge is told by its ping arriving here (the
        ping route records the ping's transaction id), not by its answer alone: after an
        outage Synapse answers 502 "AlreadyCalled" when its ping did reach the bridge but
        its delivery of queued transactions was already under way (it then tries to
        cancel the timer that started it)."""
        assert self.http is not None
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

    # ----- health -----
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

    # ----- shutdown, in the reverse order -----
    async def stop(self) -> None:
        if self._encryption_start is not None:
            self._encryption_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._encryption_start
        if self.inbox is not None:
            await self.inbox.stop()
        await self.encryption.stop()
        if self.jobs is not None:
            await self.jobs.stop()  # before the plugins shut down: their jobs run again later
        self.router.flush_handled()
        for name, func in self.plugins.impls("anywhere_shutdown"):
            try:
                result = func(bridge=self.host)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.log.exception("plugin failed to shut down", plugin=name)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.db is not None:
            await self.db.stop()
        if self.http is not None:
            await self.http.close()
        self.stopped.set()
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
