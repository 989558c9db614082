"""The whole contract between Anywhere and its plugins.

A plugin is any object or module with functions marked ``@hookimpl`` whose names are
listed here; it is registered through the ``anywhere.plugins`` entry-point group and
loaded when its entry-point name is in ``plugins.enabled``. Every hook is optional.

Hooks that return awaitables are awaited by the runtime. Hooks are called once per
plugin (the runtime calls each implementation on its own, so that one plugin's error is
logged with the plugin's name and never stops another plugin).

``docs/plugins.md`` explains each hook with examples; keep both in step.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from anywhere.storage.blobs import BlobStore
    from anywhere.storage.migrations import Migrations

    from .api import Decision, DoctorCheck, Host, QueuedJob
    from .commands import Command
    from .config import Config, ConfigSection
    from .events import EventContext, MatrixEvent
    from .namespaces import Namespaces

PROJECT = "anywhere"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

EventHandler = Callable[["MatrixEvent", "EventContext"], Awaitable[None] | None]


@hookspec
def anywhere_config_section() -> ConfigSection | None:
    """Declare this plugin's config section, ``plugins.settings.<plugin name>``.

    Called once while the config is loaded, before anything starts. Return a
    :class:`anywhere.bridge.config.ConfigSection` with the defaults and a validator; the runtime
    merges the operator's values onto the defaults, refuses unknown keys, runs the
    validator, and hands the result to the plugin as ``bridge.settings(name)``.
    """


@hookspec
def anywhere_namespaces(config: Config) -> Namespaces | None:
    """Declare the Matrix IDs this plugin manages (ghost users, room aliases).

    Called when ``registration.yaml`` is generated and at start-up. Return a
    :class:`anywhere.bridge.namespaces.Namespaces`. Namespaces of two plugins must not overlap
    (start-up and ``anywhere doctor`` refuse them). A ghost namespace should live under
    ``config['appservice.ghost_prefix']``, which the registration already claims.
    """


@hookspec
def anywhere_migrations() -> Migrations | None:
    """Declare this plugin's database schema as an ordered list of upgrade steps.

    Called at start-up, before ``anywhere_startup``. Return a
    :class:`anywhere.storage.migrations.Migrations`; each step runs once, in order, inside a
    transaction, on SQLite and PostgreSQL. Start-up refuses a database whose version for
    this plugin is newer than the steps the code knows.
    """


@hookspec
def anywhere_startup(bridge: Host) -> Awaitable[None] | None:
    """Called once the database is migrated and the homeserver answers, before the first
    event is handled. Start background tasks here (keep a handle; stop them at shutdown)."""


@hookspec
def anywhere_shutdown(bridge: Host) -> Awaitable[None] | None:
    """Called once when the bridge stops (SIGTERM, Ctrl-C). Stop tasks, close sessions."""


@hookspec
def anywhere_commands() -> list[Command] | None:
    """Return the bot commands this plugin provides (made with :func:`bridge.command`).

    Called once at start-up. ``help`` lists them under the plugin's name; the router
    parses arguments, checks the person's permission level and answers errors itself.
    """


@hookspec
def anywhere_event_handlers() -> dict[str, EventHandler] | None:
    """Return ``{event type: handler}`` for Matrix events this plugin wants.

    Called once at start-up. A handler is ``async def handler(event, ctx)`` with a
    :class:`anywhere.bridge.events.MatrixEvent` and a :class:`anywhere.bridge.events.EventContext`;
    use
    ``"*"`` to receive every event. A plain ``def`` works too, returning None or an
    awaitable: a handler that sees every message and rarely acts can decide without
    starting a coroutine and return one only when it has work.

    Events are delivered in the order the homeserver sent them, at least once: after a
    crash, events that were acknowledged but not yet handled are handled again, so make
    side effects idempotent on ``event.event_id`` and send through ``ctx`` (whose sends
    are deduplicated by the homeserver).
    """


@hookspec
def anywhere_job_handlers() -> dict[str, Callable[[QueuedJob], Awaitable[None]]] | None:
    """Return ``{job kind: async def handler(job)}`` for the background jobs this plugin
    enqueues with ``await bridge.jobs.enqueue(kind, payload, key=...)`` (bridge/jobs.py).

    Called once at start-up. Name kinds after your plugin (``"drive.save_from_chat"``);
    a kind two plugins give stops start-up with both named. The handler gets a
    :class:`anywhere.bridge.jobs.Job` (``payload``, ``attempt``) and runs beside the event worker,
    at least once: make it idempotent. Raising retries it later (2 s, 4 s, ... up to ten
    minutes, eight tries, then it is kept as failed and logged); an error the person
    should hear about is better answered by the handler itself, which then returns.
    """


@hookspec(firstresult=True)
def anywhere_query_user(bridge: Host, user_id: str) -> Awaitable[bool] | bool | None:
    """The homeserver asks whether ``user_id`` (inside our namespaces) exists.

    Return True (after creating the user if needed) to claim it; None to pass.
    """


@hookspec(firstresult=True)
def anywhere_query_room_alias(bridge: Host, alias: str) -> Awaitable[bool] | bool | None:
    """The homeserver asks whether room ``alias`` exists. Create the room and return True
    to claim it; None to pass."""


@hookspec
def anywhere_web_routes(bridge: Host, app: web.Application) -> None:
    """Add HTTP routes to the bridge's web server.

    Called once at start-up. Put routes under ``/_anywhere/<plugin name>/``. Every route
    must authenticate: use :func:`anywhere.bridge.web.require_matrix_user` for people (their Matrix
    access token) or :func:`anywhere.bridge.web.require_operator` for the operator's token.
    """


@hookspec(firstresult=True)
def anywhere_authorize(
    bridge: Host, actor: str, action: str, target: str | None, context: dict[str, Any]
) -> Awaitable[Decision | None] | Decision | None:
    """Decide whether ``actor`` may do ``action`` (``call.place``, ``drive.share``, ...).

    Called by the runtime and by plugins through ``bridge.authorize(...)`` before they act.
    The first plugin that returns a :class:`bridge.Decision` (``allowed``, ``reason``,
    ``rule``) decides; None means no opinion, and with no opinion at all the action is
    allowed. ``bridge.authorize`` always answers a ``Decision``. The policy engine
    implements this hook.
    """


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_policy_facts(...) is deprecated and goes in the next release: implement "
        "anywhere_policy_gather_facts(...), declared by the policy plugin "
        "(plugins/policy/hookspecs.py)"
    )
)
def anywhere_policy_facts(
    bridge: Host, actor: str, action: str, target: str | None, context: dict[str, Any]
) -> Awaitable[dict[str, Any]] | dict[str, Any] | None:
    """Deprecated: the policy's ``anywhere_policy_gather_facts``
    (plugins/policy/hookspecs.py) is the same hook, declared by its owner. Still read by
    the policy plugin for one release."""


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_record_usage(...) is deprecated and goes in the next release: implement "
        "anywhere_policy_record_usage(...), declared by the policy plugin "
        "(plugins/policy/hookspecs.py)"
    )
)
def anywhere_record_usage(bridge: Host, user_id: str, metric: str, amount: float) -> None:
    """Deprecated: the policy's ``anywhere_policy_record_usage``
    (plugins/policy/hookspecs.py) is the same hook, declared by its owner. Still called by
    ``bridge.record_usage(...)`` for one release."""


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_call_modes() is deprecated and goes in the next release: implement "
        "anywhere_calls_modes(), declared by the calls plugin (plugins/calls/hookspecs.py)"
    )
)
def anywhere_call_modes() -> dict[str, type] | None:
    """Deprecated: the calls plugin's ``anywhere_calls_modes`` (plugins/calls/hookspecs.py)
    is the same hook, declared by its owner. Still read by the calls plugin for one
    release."""


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_blob_stores(bridge) is deprecated and goes in the next release: implement "
        "anywhere_drive_blob_stores(bridge), declared by the drive (plugins/drive/hookspecs.py)"
    )
)
def anywhere_blob_stores(bridge: Host) -> dict[str, Callable[[str], BlobStore]] | None:
    """Deprecated: the drive's ``anywhere_drive_blob_stores`` (plugins/drive/hookspecs.py)
    is the same hook, declared by its owner. Still read by the drive for one release, with
    a DeprecationWarning when a plugin implementing it is registered."""


@hookspec
def anywhere_hookspecs() -> ModuleType | list[ModuleType] | None:
    """Return the module (or modules) declaring the extension hooks this plugin offers
    to other plugins, as pytest's ``pytest_addhooks`` does.

    Called once, right when the plugin is registered; the runtime adds the module's
    ``@hookspec`` functions (made with ``pluggy.HookspecMarker("anywhere")``, or
    :data:`anywhere.bridge.hookspecs.hookspec`) with pluggy's ``add_hookspecs``. Call your hooks
    through ``bridge.extensions.collect(...)`` (``{name: value}`` contributions) or
    your own loop; document them in docs/plugins.md.
    """


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_network_connectors(bridge) is deprecated and goes in the next release: "
        "implement anywhere_groups_connectors(bridge), declared by the groups plugin "
        "(plugins/groups/hookspecs.py)"
    )
)
def anywhere_network_connectors(bridge: Host) -> list[Any] | None:
    """Deprecated: the groups plugin's ``anywhere_groups_connectors``
    (plugins/groups/hookspecs.py) is the same hook, declared by its owner. Still read by
    the groups plugin for one release."""


@hookspec
def anywhere_doctor(bridge: Host) -> Awaitable[list[DoctorCheck]] | list[DoctorCheck] | None:
    """Return this plugin's checks for ``anywhere doctor``: a list of
    :class:`anywhere.bridge.doctor.DoctorCheck` (``DoctorCheck.ok(name, text)``,
    ``.warn(name, text, fix)``, ``.fail(name, text, fix)``), each printed as one line.

    Called by ``anywhere doctor`` after the core's checks, whether or not the bridge is
    running. ``bridge`` is not started: read ``bridge.info`` and ``bridge.settings()``,
    and open and close what you check yourself (a server you connect to, a folder you
    write to — and leave it as you found it). May be async; 20 s at most. An exception
    is printed as a failed check naming the plugin.
    """


@hookspec
def anywhere_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``anywhere`` command line (``anywhere drive sync ...``).

    Called only when the command line names a command the core does not know, for every
    installed plugin (enabled or not: the CLI runs without a config). Add a parser with
    ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=handler)``, where
    ``handler(args) -> int`` returns the exit code.
    """


@hookspec(
    warn_on_impl=DeprecationWarning(
        "anywhere_policy_rule_types() is deprecated and goes in the next release: implement "
        "anywhere_policy_rule_classes(), declared by the policy plugin "
        "(plugins/policy/hookspecs.py)"
    )
)
def anywhere_policy_rule_types() -> dict[str, type] | None:
    """Deprecated: the policy's ``anywhere_policy_rule_classes``
    (plugins/policy/hookspecs.py) is the same hook, declared by its owner. Still read by
    the policy plugin for one release."""
