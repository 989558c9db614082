"""The extension hooks the policy plugin offers to other plugins (added when the policy
plugin loads, through ``anywhere_hookspecs``; listed in docs/plugins.md).

The names before contract 1.1 (``anywhere_policy_facts``, ``anywhere_policy_rule_types``,
``anywhere_record_usage``, declared by the core) are still read for one release, with a
DeprecationWarning naming these when a plugin implementing them is registered."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from anywhere.bridge.api import Host
    from anywhere.policy import Rule

# The same marker as anywhere.bridge.hookspecs.hookspec (pluggy matches markers by project name).
hookspec = pluggy.HookspecMarker("anywhere")


@hookspec
def anywhere_policy_gather_facts(
    bridge: Host, actor: str, action: str, target: str | None, context: dict[str, Any]
) -> Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None:
    """Give facts for a policy decision: ``{fact name: value}`` to merge (the built-in
    names are in ``policy/facts.py``; name your own after your plugin), or None.

    Called by the policy plugin once per decision, before the (pure) rules run, and for
    the Synapse module's ``network`` fact with ``action="call.place"`` and
    ``context["purpose"] == "synapse_module"``. May do I/O (the rules never do); take only
    the arguments you need (``def anywhere_policy_gather_facts(self, bridge, actor)``).
    """


@hookspec
def anywhere_policy_rule_classes() -> Mapping[str, type[Rule]] | None:
    """Give rule types: ``{type name: subclass of policy.Rule}``, usable in the rules
    file as ``type: <type name>`` (see docs/policy.md, "Writing a rule type").

    Called once when the policy plugin starts, before the rules are loaded. A type name
    given twice stops start-up with both plugins named; a name the policy has already
    (``plan_threshold``, ...) is refused when the rules are loaded.
    """


@hookspec
def anywhere_policy_record_usage(
    bridge: Host, user_id: str, metric: str, amount: float
) -> Awaitable[None] | None:
    """A plugin reported that ``user_id`` used ``amount`` of ``metric`` (``mvoip_mb``).

    Called for each ``await bridge.record_usage(user_id, metric, amount)``; the policy
    plugin implements it and adds the amount to this month's total (the
    ``mvoip_mb_used_this_month`` fact). Implement it too to see usage yourself.
    """
