"""The extension hook the groups plugin offers to other plugins (added when the groups
plugin loads, through ``anywhere_hookspecs``; listed in docs/plugins.md).

Before contract 1.2 it was ``anywhere_network_connectors``, declared by the core: still
read for one release, with a DeprecationWarning naming this one when a plugin
implementing it is registered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from anywhere.bridge.api import Host

    from .connector import Connector

# The same marker as anywhere.bridge.hookspecs.hookspec (pluggy matches markers by project name).
hookspec = pluggy.HookspecMarker("anywhere")


@hookspec
def anywhere_groups_connectors(bridge: Host) -> list[Connector] | None:
    """Return connector instances (subclasses of
    :class:`anywhere.plugins.groups.connector.Connector`) for the networks this plugin bridges
    (see docs/networks.md). A connector is started with a
    :class:`anywhere.plugins.groups.host.ConnectorHost`: what it may use of the groups plugin.

    Called once when the groups plugin starts. Each network needs a settings entry
    ``plugins.settings.groups.networks.<network>`` (its ghost users' namespace is claimed
    from it); a network given twice stops start-up with both plugins named.
    """
