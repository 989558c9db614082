"""The running bridge: one config, one database, one HTTP session, one web server."""

from __future__ import annotations

from typing import Any

import aiohttp
import structlog
from aiohttp import web
from mautrix.appservice import AppServiceAPI, IntentAPI
from mautrix.util.async_db import Database

from .api import Decision
from .commands import Command
from .config import Config
from .core import CorePlugin
from .crypto import Encryption
from .inbox import Inbox
from .jobs import Jobs
from .lifecycle import Lifecycle
from .namespaces import Namespaces
from .pluginmanager import PluginManager
from .router import EventRouter
from .services import (
    DirectChats,
    Extensions,
    Media,
    Permissions,
    Signer,
    bridge_info,
    keys_kept_from_before,
)
from .web import AccessTokens, UnknownToken

log = structlog.get_logger("anywhere")


def load_plugins(config: Config, manager: PluginManager | None = None) -> PluginManager:
    """Load the core (:class:`~anywhere.bridge.core.CorePlugin`) and the enabled plugins
    (see :meth:`PluginManager.load`)."""
    manager = manager or PluginManager()
    manager.load(config, CorePlugin())
    return manager


def plugin_namespaces(config: Config, manager: PluginManager) -> dict[str, Namespaces]:
    return manager.namespaces(config)


class Bridge:
    """The running bridge. Plugins get it typed as :class:`anywhere.bridge.api.Host`: the services
    (``info``, ``permissions``, ``signer``, ``direct_chats``, ``media``, ``extensions``,
    ``db``, ``http``, ``jobs``, ``log``, ``bot``, ``intent()``, ``settings()``,
    ``authorize()``), never its config or tokens."""

    def __init__(self, config: Config, plugins: PluginManager | None = None) -> None:
        self.config = config
        self.plugins = load_plugins(config, plugins)
        self.log = log.bind(appservice=config["appservice.id"])
        self.router = EventRouter(self, self.plugins, self.log)
        self.dispatch = self.router.dispatch  # what the inbox hands each event to
        self._ours: dict[str, bool] = {}
        self.access_tokens = AccessTokens(self._whoami)
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
            is_encrypted=lambda room_id, user_id=None: self.encryption.is_encrypted(
                room_id, user_id
            ),
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
            decrypt_worker=config["encryption.decrypt_worker"],
        )
        # start-up and shutdown in order, waiting for the homeserver, health: it owns the
        # running parts (db, inbox, jobs, http, api), read here through properties
        self.lifecycle = Lifecycle(
            self, config, self.plugins, self.router, self.encryption, self.log
        )

    # ----- the running parts, owned by the lifecycle -----
    @property
    def db(self) -> Database | None:
        return self.lifecycle.db

    @db.setter
    def db(self, value: Database | None) -> None:
        self.lifecycle.db = value

    @property
    def inbox(self) -> Inbox | None:
        return self.lifecycle.inbox

    @inbox.setter
    def inbox(self, value: Inbox | None) -> None:
        self.lifecycle.inbox = value

    @property
    def jobs(self) -> Jobs | None:
        return self.lifecycle.jobs

    @jobs.setter
    def jobs(self, value: Jobs | None) -> None:
        self.lifecycle.jobs = value

    @property
    def http(self) -> aiohttp.ClientSession | None:
        return self.lifecycle.http

    @http.setter
    def http(self, value: aiohttp.ClientSession | None) -> None:
        self.lifecycle.http = value

    @property
    def api(self) -> AppServiceAPI | None:
        return self.lifecycle.api

    @api.setter
    def api(self, value: AppServiceAPI | None) -> None:
        self.lifecycle.api = value

    @property
    def homeserver_ready(self) -> bool:
        return self.lifecycle.homeserver_ready

    @property
    def last_ping(self) -> tuple[str | None, float] | None:
        """The last ping the homeserver sent: its transaction id, when (the ping route
        records it)."""
        return self.lifecycle.last_ping

    @last_ping.setter
    def last_ping(self, value: tuple[str | None, float] | None) -> None:
        self.lifecycle.last_ping = value

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
        ``anywhere.bridge.web.AccessTokens``); raises HTTPUnauthorized for a token it does not
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

    # ----- life cycle (bridge/lifecycle.py) -----
    async def start(self) -> None:
        await self.lifecycle.start()

    async def open(self) -> None:
        """The first part of start-up (see :meth:`Lifecycle.open`)."""
        await self.lifecycle.open()

    async def start_plugins(self) -> None:
        """Collect the commands and handlers, run every plugin's ``anywhere_startup``
        (see :meth:`Lifecycle.start_plugins`)."""
        await self.lifecycle.start_plugins()

    def build_web_app(self) -> web.Application:
        """The web server's app: the core's routes and every enabled plugin's."""
        return self.lifecycle.build_web_app()

    async def _start_web(self) -> None:
        await self.lifecycle.start_web()

    @property
    def _runner(self) -> web.AppRunner | None:
        return self.lifecycle.runner

    async def _ping_homeserver(self) -> None:
        await self.lifecycle.ping_homeserver()

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
        return await self.lifecycle.health_checks()

    async def stop(self) -> None:
        await self.lifecycle.stop()

    async def run_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop cleanly."""
        await self.lifecycle.run_forever()
