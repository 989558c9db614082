"""The extension hook the calls plugin offers to other plugins (added when the calls
plugin loads, through ``anywhere_hookspecs``; listed in docs/plugins.md).

Before contract 1.1 it was ``anywhere_call_modes``, declared by the core: still read for
one release, with a DeprecationWarning naming this one when a plugin implementing it is
registered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .modes import CallMode

# The same marker as anywhere.bridge.hookspecs.hookspec (pluggy matches markers by project name).
hookspec = pluggy.HookspecMarker("anywhere")


@hookspec
def anywhere_calls_modes() -> Mapping[str, type[CallMode]] | None:
    """Give call modes: ``{mode name: subclass of anywhere.plugins.calls.modes.CallMode}`` (see
    docs/calls.md, "Writing a call mode"). A mode is made per call as ``Mode(host,
    live)``: ``host`` is a :class:`anywhere.plugins.calls.host.CallHost`, what a mode may use of
    the calls plugin; ``live`` a :class:`anywhere.plugins.calls.host.ModeCall`, its call.

    A mode answers the calls to the bot that the operator's ``bot_modes`` rules
    (``plugins.settings.calls``) give it; a rule naming a mode nobody gives stops
    start-up naming the modes there are.

    Called once when the calls plugin starts. A name already taken (``echo``, ``memo``,
    ``conference`` or another plugin's) stops start-up with both plugins named.
    """
