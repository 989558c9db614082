"""The plugin kit: run a plugin's commands and event handlers in-process, with no homeserver.

The real plugin manager, command router (the core plugin, with its parser, permission
levels and policy check), event dispatch and job queue run on a temporary SQLite
database; the homeserver is replaced by :class:`KitHomeserver`, which records what is
sent into :class:`KitRoom` objects (and drops a repeated transaction id, as a homeserver
does). A plugin's unit test runs in well under a second::

    async def test_hello(plugin_kit):
        kit = await plugin_kit({"hello": anywhere_hello})
        room = kit.room()
        await room.send("!hello Ada")
        assert (await room.next_reply()) == "Hello, Ada!"

What the fake homeserver cannot do (resolving aliases, room state, ...) raises
:class:`KitUnsupported`, which says so: test that part end to end with the real-Synapse
fixtures (``anywhere_stack``, ``matrix_user``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from anywhere.bridge.config import config_from_data
from anywhere.bridge.events import MatrixEvent
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.runtime import Bridge

DOMAIN = "kit.test"
#: How long ``next_reply`` waits for a message before failing the test (a background
#: command on a slow service may need longer: pass ``timeout=``).
WAIT_SECONDS = 10.0
#: How long stopping a kit (the bridge's shutdown: job workers, the plugins'
#: ``anywhere_shutdown``, the database) or a :func:`serve` service may take before the
#: test fails, saying what it was waiting for.
STOP_SECONDS = 30.0

T = TypeVar("T")


class KitUnsupported(NotImplementedError):
    """The plugin called something of the homeserver the kit does not imitate."""


class KitRoom:
    """One room: what the bot (and ghosts) sent into it, in order."""

    def __init__(self, kit: PluginKit, room_id: str, user: str) -> None:
        self.kit = kit
        self.room_id = room_id
        self.user = user
        self.sent: list[dict[str, Any]] = []  # {"type", "content", "sender", "event_id"}
        self.redacted: list[str] = []
        self._read = 0
        self._changed = asyncio.Condition()

    async def send(self, body: str, *, sender: str | None = None, **content: Any) -> str:
        """Post a text message as ``sender`` (the room's person by default) and hand it to
        the plugins as the homeserver would; returns its event id once every handler
        is done (a background command may answer later: :meth:`next_reply`)."""
        return await self.kit.deliver(
            self.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body, **content},
            sender or self.user,
        )

    def replies(self) -> list[str]:
        """The bodies of every message sent into the room so far."""
        return [message["content"].get("body", "") for message in self.sent]

    async def next_reply(self, timeout: float = WAIT_SECONDS) -> str:
        """The body of the next message sent into the room that this method has not
        returned yet, waiting for it if needed."""
        message = await self.next_message(timeout)
        return message["content"].get("body", "")

    async def next_message(self, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.sent) > self._read), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"nothing more was sent into {self.room_id} within {timeout} s; "
                    f"sent so far: {self.replies()}"
                ) from None
            message = self.sent[self._read]
            self._read += 1
            return message

    async def record(self, message: dict[str, Any]) -> None:
        async with self._changed:
            self.sent.append(message)
            self._changed.notify_all()


class KitIntent:
    """The part of mautrix's ``IntentAPI`` the kit imitates, for one user."""

    def __init__(self, homeserver: KitHomeserver, user_id: str) -> None:
        self.homeserver = homeserver
        self.mxid = user_id

    async def send_message_event(
        self, room_id: str, event_type: Any, content: Any, txn_id: str | None = None, **_: Any
    ) -> str:
        return await self.homeserver.store(
            room_id, str(event_type), dict(content), self.mxid, txn_id
        )

    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if html:
            content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        return await self.send_message_event(room_id, "m.room.message", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None, **_: Any) -> str:
        self.homeserver.room(room_id).redacted.append(event_id)
        return self.homeserver.new_event_id()

    async def join_room(self, room_id: str, **_: Any) -> str:
        return room_id

    async def leave_room(self, room_id: str, reason: str | None = None, **_: Any) -> None:
        return None

    async def set_displayname(self, name: str, **_: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise KitUnsupported(
            f"the plugin kit's homeserver does not do {name}(): test this part against a "
            "real Synapse (the anywhere_stack and matrix_user fixtures)"
        )


class KitHomeserver:
    """Stands in for mautrix's ``AppServiceAPI``: intents that record into rooms."""

    def __init__(self, kit: PluginKit, bot_mxid: str) -> None:
        self.kit = kit
        self.bot_mxid = bot_mxid
        self._ids = itertools.count(1)
        self._txns: dict[tuple[str, str], str] = {}

    def new_event_id(self) -> str:
        return f"$kit{next(self._ids)}"

    def room(self, room_id: str) -> KitRoom:
        return self.kit.rooms.setdefault(room_id, KitRoom(self.kit, room_id, ""))

    def bot_intent(self) -> KitIntent:
        return KitIntent(self, self.bot_mxid)

    def intent(self, user_id: str, *_: Any, **__: Any) -> KitIntent:
        return KitIntent(self, user_id)

    async def store(
        self, room_id: str, event_type: str, content: dict, sender: str, txn_id: str | None
    ) -> str:
        if txn_id is not None and (sender, txn_id) in self._txns:
            return self._txns[(sender, txn_id)]  # a repeat: the homeserver drops it
        event_id = self.new_event_id()
        if txn_id is not None:
            self._txns[(sender, txn_id)] = event_id
        message = {"type": event_type, "content": content, "sender": sender, "event_id": event_id}
        await self.room(room_id).record(message)
        return event_id


class PluginKit:
    """A bridge without a homeserver, for a plugin's unit tests (``plugin_kit`` fixture).

    ``plugins``: ``{name: plugin object or module}`` registered as given, besides the
    core; ``enabled``: entry-point names to load as well (installed plugins);
    ``settings``: ``plugins.settings``; ``permissions``: ``bridge.permissions`` (default:
    everyone on ``kit.test`` is a user, ``@admin:kit.test`` an admin)."""

    def __init__(
        self,
        workdir: Path,
        plugins: dict[str, Any] | None = None,
        *,
        enabled: list[str] | tuple[str, ...] = (),
        settings: dict[str, Any] | None = None,
        permissions: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        manager = PluginManager()
        for name, plugin in (plugins or {}).items():
            manager.register(plugin, name)
        token = secrets.token_hex
        default_permissions = {DOMAIN: "user", f"@admin:{DOMAIN}": "admin"}
        config = config_from_data(
            {
                "homeserver": {"url": "http://127.0.0.1:9", "domain": DOMAIN},
                "appservice": {"as_token": token(16), "hs_token": token(16)},
                "operations": {"token": token(16)},
                "data_dir": str(self.workdir),
                "database": {"url": "sqlite:kit.db"},
                "bridge": {"permissions": permissions or default_permissions},
                "plugins": {"enabled": list(enabled), "settings": settings or {}},
            },
            self.workdir / "config.yaml",
            environ={},
        )
        self.bridge = Bridge(config, manager)
        self.rooms: dict[str, KitRoom] = {}
        self._rooms = itertools.count(1)
        self._events = itertools.count(1)

    @property
    def bot(self) -> str:
        return self.bridge.info.bot_user_id

    async def start(self) -> PluginKit:
        """Open the database, run the migrations and every plugin's start-up, start the
        job workers."""
        bridge = self.bridge
        await bridge.open()
        bridge.api = KitHomeserver(self, self.bot)  # type: ignore[assignment]
        await bridge.start_plugins()
        bridge.jobs.start()
        return self

    async def stop(self) -> None:
        """Stop the bridge; fails (AssertionError) if that takes over ``STOP_SECONDS``,
        naming where it waits and what else still runs."""
        await finish(self.bridge.stop(), STOP_SECONDS, "stopping the plugin kit's bridge")

    async def __aenter__(self) -> PluginKit:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def room(self, user: str = f"@ada:{DOMAIN}") -> KitRoom:
        """A new room the bot is in, with ``user`` in it (commands need the prefix)."""
        room_id = f"!room{next(self._rooms)}:{DOMAIN}"
        self.rooms[room_id] = KitRoom(self, room_id, user)
        return self.rooms[room_id]

    async def direct_chat(self, user: str = f"@ada:{DOMAIN}") -> KitRoom:
        """A new direct chat between ``user`` and the bot (the prefix is optional)."""
        room = self.room(user)
        await self.bridge.db.execute(
            "INSERT INTO bot_room (room_id, is_direct, dm_user) VALUES ($1, TRUE, $2)",
            room.room_id,
            user,
        )
        return room

    async def deliver(
        self, room_id: str, event_type: str, content: dict[str, Any], sender: str, **raw: Any
    ) -> str:
        """Hand one event to the plugins, as the event worker does; its id."""
        event_id = raw.pop("event_id", None) or f"$in{next(self._events)}"
        event = MatrixEvent(
            {
                "type": event_type,
                "event_id": event_id,
                "room_id": room_id,
                "sender": sender,
                "origin_server_ts": 0,
                "content": content,
                **raw,
            },
            txn_id="kit",
        )
        await self.bridge.dispatch(event)
        return event_id


@contextlib.asynccontextmanager
async def serve(routes: dict[str, str] | web.Application) -> AsyncIterator[str]:
    """A web service on loopback for the plugin under test to call (through the real
    ``bridge.http``): ``{path: text}`` answered with 200 (any other path: 404), or an
    aiohttp application of your own. Yields its base URL (``http://127.0.0.1:PORT``)."""
    if isinstance(routes, web.Application):
        app = routes
    else:
        app = web.Application()
        for path, text in routes.items():
            app.router.add_get(path, _answer(text))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp has no getter
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await finish(runner.cleanup(), STOP_SECONDS, f"stopping the web service on port {port}")


async def finish(step: Awaitable[T], seconds: float, what: str) -> T:
    """Await ``step``, a teardown; if it has not ended within ``seconds``, cancel it and
    fail with ``what``, where it waits, and where every other unfinished task waits (a
    teardown must not hang the test run)."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not task and t is not current]
    report = [f"{what} did not finish within {seconds} s; it waits at:", waiting_at(task)]
    if others:
        report.append("other unfinished tasks:")
        report += [f"{t.get_name()}:\n{waiting_at(t)}" for t in others[:10]]
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)  # it may not let itself be cancelled either
    raise AssertionError("\n".join(report))


def waiting_at(task: asyncio.Future) -> str:
    """Where a task is suspended: its chain of awaits, outermost first, one a line."""
    lines = []
    awaited = task.get_coro() if isinstance(task, asyncio.Task) else None
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return "\n".join(lines) or f"  {task!r}"


def _answer(text: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text)

    return handler
