"""The groups plugin: group rooms for quick decisions, and bridging other messengers
through network connectors (the XMPP one is built in; others come from plugins through
the ``anywhere_groups_connectors`` hook, plugins/groups/hookspecs.py; see docs/networks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from anywhere.bridge import MatrixEvent, Namespaces, hookimpl
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.namespaces import user_regex

from . import commands
from .connector import Connector, check_connector
from .hub import Hub
from .rooms import GroupRooms
from .schema import MIGRATIONS
from .settings import SECTION, enabled_networks

if TYPE_CHECKING:
    from anywhere.bridge import EventContext
    from anywhere.bridge.config import Config
    from anywhere.bridge.runtime import Bridge

RELAYED_TYPES = (
    "m.room.message",
    "m.room.redaction",
    "m.room.member",
    "m.reaction",
    "m.typing",
    "m.receipt",
)


def collect_connectors(bridge: Bridge, settings: dict[str, Any]) -> list[Connector]:
    """The built-in XMPP connector (when enabled) and those other plugins give."""
    plugins = bridge.plugins
    found: list[Connector] = []
    if settings["xmpp"]["enabled"]:
        from .xmpp import XmppConnector

        found.append(XmppConnector())
    owners = {c.network: "groups" for c in found}
    given_by = [
        *plugins.call_each("anywhere_groups_connectors", bridge=bridge),
        *plugins.call_each("anywhere_network_connectors", bridge=bridge),  # deprecated
    ]
    for name, given in given_by:
        for connector in given or []:
            try:
                connector = check_connector(connector, name)
            except TypeError as exc:
                raise PluginLoadError(str(exc)) from exc
            if connector.network in owners:
                raise PluginLoadError(
                    f"plugin {name!r} gives a connector for {connector.network!r}, which "
                    f"plugin {owners[connector.network]!r} already gives"
                )
            if connector.network not in settings["networks"]:
                raise PluginLoadError(
                    f"plugin {name!r} gives a connector for {connector.network!r}: add "
                    f"plugins.settings.groups.networks.{connector.network} (its settings, "
                    "{} for none) so that the registration claims its ghost users"
                )
            owners[connector.network] = name
            found.append(connector)
    return found


class GroupsPlugin:
    def __init__(self) -> None:
        self.bridge: Bridge | None = None
        self.rooms: GroupRooms | None = None
        self.hub: Hub | None = None

    @property
    def settings(self) -> dict[str, Any]:
        return self.bridge.settings("groups")

    @hookimpl
    def anywhere_hookspecs(self):
        from . import hookspecs

        return hookspecs

    @hookimpl
    def anywhere_config_section(self):
        return SECTION

    @hookimpl
    def anywhere_migrations(self):
        return MIGRATIONS

    @hookimpl
    def anywhere_namespaces(self, config: Config):
        prefix, domain = config["appservice.ghost_prefix"], config["homeserver.domain"]
        networks = enabled_networks(config.plugin_settings("groups"))
        return Namespaces.of(users=[user_regex(f"{prefix}{n}_", domain) for n in networks])

    @hookimpl
    async def anywhere_startup(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.rooms = GroupRooms(bridge, self.settings)
        self.hub = Hub(bridge, self.settings)
        await self.hub.start(collect_connectors(bridge, self.settings))

    @hookimpl
    async def anywhere_doctor(self, bridge: Bridge):
        """The XMPP server takes the bridge as its component (when XMPP is enabled)."""
        xmpp = bridge.settings("groups")["xmpp"]
        if not xmpp["enabled"]:
            return []
        from .xmpp.doctor import check_component

        return await check_component(xmpp, await self._linked_xmpp_rooms(bridge))

    async def _linked_xmpp_rooms(self, bridge: Bridge) -> list[str]:
        """The XMPP rooms linked to groups, from the bridge's database (none when it
        cannot be read: a first run, before the database exists)."""
        from anywhere.storage.database import open_database

        url = bridge.config.database_url
        if url.startswith("sqlite") and not Path(url.partition(":")[2]).exists():
            return []  # nothing linked yet, and the doctor creates nothing
        try:
            db = await open_database(url)
        except Exception:
            return []
        try:
            rows = await db.fetch(
                "SELECT remote_id FROM groups_portal WHERE network = 'xmpp' AND kind = 'group'"
            )
            return sorted(row["remote_id"] for row in rows)
        except Exception:
            return []
        finally:
            await db.stop()

    @hookimpl
    async def anywhere_shutdown(self, bridge: Bridge) -> None:
        if self.hub is not None:
            await self.hub.stop()

    @hookimpl
    def anywhere_commands(self):
        return commands.build(self)

    @hookimpl
    def anywhere_event_handlers(self):
        return {t: self._on_event for t in RELAYED_TYPES}

    async def _on_event(self, event: MatrixEvent, ctx: EventContext) -> None:
        if (
            event.type == "m.room.member"
            and event.content.get("membership") == "invite"
            and await self.hub.on_ghost_invite(event)
        ):
            return
        if event.type == "m.room.message":
            body = event.content.get("body")
            prefix = self.bridge.config["bridge.command_prefix"]
            if isinstance(body, str) and body.startswith(prefix):
                return  # a command for the bot, not a message for the other network
        await self.hub.on_matrix_event(event, ctx)

    @hookimpl
    async def anywhere_query_user(self, bridge: Bridge, user_id: str):
        if self.hub is None or self.hub.ghosts.parse(user_id, list(self.hub.connectors)) is None:
            return None
        await bridge.intent(user_id).ensure_registered()
        return True

    async def is_direct_with_bot(self, room_id: str) -> bool:
        return bool(
            await self.bridge.db.fetchval(
                "SELECT is_direct FROM bot_room WHERE room_id = $1", room_id
            )
        )


plugin = GroupsPlugin()
