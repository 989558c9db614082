"""The groups plugin on the plugin contract (issue 15): its extension hook declared by
itself (plugins/groups/hookspecs.py), the old name still read with a warning, and
connectors given a :class:`ConnectorHost` — what a connector may use — instead of the
whole hub."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from anywhere.bridge import hookimpl
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.plugins.groups import collect_connectors
from anywhere.plugins.groups import plugin as groups_plugin
from anywhere.plugins.groups.connector import Connector
from anywhere.plugins.groups.host import ConnectorHost
from anywhere.plugins.groups.hub import Hub

SETTINGS = {"xmpp": {"enabled": False}, "networks": {"log": {}}}
ROOT = Path(__file__).resolve().parents[2]


class LogConnector(Connector):
    network = "log"

    async def start(self, hub, settings):
        pass

    async def stop(self):
        pass

    async def connect(self, portal):
        pass

    async def handle_matrix_message(self, portal, sender, message):
        return "1"


def test_connectors_given_through_the_groups_plugins_own_hook_are_collected():
    class ConnectorPlugin:
        @hookimpl
        def anywhere_groups_connectors(self, bridge):
            return [LogConnector()]

    manager = PluginManager()
    manager.register(groups_plugin, "groups")
    manager.register(ConnectorPlugin(), "log_plugin")
    manager.check_hooks()  # the groups plugin declares the hook
    (found,) = collect_connectors(SimpleNamespace(plugins=manager), SETTINGS)
    assert isinstance(found, LogConnector)


def test_the_old_hook_name_still_works_with_a_warning_naming_the_new_one():
    class OldPlugin:
        @hookimpl
        def anywhere_network_connectors(self, bridge):
            return [LogConnector()]

    manager = PluginManager()
    manager.register(groups_plugin, "groups")
    with pytest.warns(DeprecationWarning, match=r"implement anywhere_groups_connectors\("):
        manager.register(OldPlugin(), "old")
    (found,) = collect_connectors(SimpleNamespace(plugins=manager), SETTINGS)
    assert isinstance(found, LogConnector)


def test_a_network_given_under_both_names_stops_start_up_naming_both_plugins():
    class New:
        @hookimpl
        def anywhere_groups_connectors(self, bridge):
            return [LogConnector()]

    class Old:
        @hookimpl
        def anywhere_network_connectors(self, bridge):
            return [LogConnector()]

    manager = PluginManager()
    manager.register(groups_plugin, "groups")
    manager.register(New(), "new")
    with pytest.warns(DeprecationWarning):
        manager.register(Old(), "old")
    with pytest.raises(Exception, match="'old' gives a connector for 'log'.*'new'"):
        collect_connectors(SimpleNamespace(plugins=manager), SETTINGS)


def promised() -> set[str]:
    members = {n for n, _ in inspect.getmembers(ConnectorHost) if not n.startswith("_")}
    return members | set(ConnectorHost.__annotations__)


def test_the_hub_is_a_connector_host():
    for name in promised() - {"bridge", "settings"}:
        assert callable(getattr(Hub, name)), name
    assert {"bridge", "settings"} <= set(inspect.signature(Hub.__init__).parameters)


def test_the_xmpp_connector_uses_only_what_the_connector_host_promises():
    source = "".join(p.read_text() for p in (ROOT / "plugins/groups/xmpp").glob("*.py"))
    used = set(re.findall(r"\bhub\.([a-z_]+)", source))
    assert used and used <= promised(), used - promised()


def test_the_docs_list_every_member_of_the_connector_host():
    doc = (ROOT / "docs/networks.md").read_text()
    listed = set(re.findall(r"`(?:await )?hub\.([a-z_]+)", doc))
    assert promised() <= listed, promised() - listed
