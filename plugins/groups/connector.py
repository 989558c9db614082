"""The network connector interface, modelled on mautrix-go's bridgev2.

A connector brings one network (XMPP, ...) to the groups plugin. It implements the small
required interface of :class:`Connector` and, one by one, the optional capabilities below
that its network can do; the hub detects them with ``isinstance`` and hides the commands
and drops the events a connector cannot serve.

The runtime side (:class:`anywhere.plugins.groups.hub.Hub`) keeps the portals, the ghost users,
the message ids both ways and the loop prevention; a connector only talks to its network
and reports what happens there through the hub's ``remote_*`` methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

# the data both ways, in their own module (the hub's ConnectorHost uses them too); named
# here as well, where connectors have always imported them
from .messages import (
    DIRECT,
    GROUP,
    FileData,
    Location,
    MatrixSender,
    Message,
    Portal,
    RemoteUser,
)

if TYPE_CHECKING:
    from .host import ConnectorHost

__all__ = [
    "CAPABILITIES",
    "DIRECT",
    "GROUP",
    "REQUIRED",
    "Connector",
    "EditHandling",
    "FileData",
    "FileHandling",
    "GroupLinking",
    "Location",
    "LocationHandling",
    "MatrixSender",
    "MembershipHandling",
    "Message",
    "NetworkUnavailable",
    "Portal",
    "ReactionHandling",
    "ReadMarkerHandling",
    "RedactionHandling",
    "Refused",
    "RemoteUser",
    "TypingHandling",
    "capabilities",
    "check_connector",
]


class Connector(ABC):
    """The required interface. ``network`` is the short name (``xmpp``) used in ghost IDs
    (``@anywhere_xmpp_...``), in ``!group link xmpp:...`` and in the settings."""

    network: str = ""

    @abstractmethod
    async def start(self, hub: ConnectorHost, settings: dict[str, Any]) -> None:
        """Connect to the network. Return soon; keep reconnecting in the background."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect and stop background tasks."""

    @abstractmethod
    async def connect(self, portal: Portal) -> None:
        """Start receiving the remote chat of ``portal`` (join the room): called for
        every portal at start-up and after linking."""

    @abstractmethod
    async def handle_matrix_message(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        """Send a Matrix message to the network; return the network's message ID.

        Raise :class:`NetworkUnavailable` while the network cannot be reached: the hub
        keeps the message and tries again (in order) once the connector is back.
        """


class NetworkUnavailable(Exception):
    """The network cannot be reached right now; try again later."""


class Refused(Exception):
    """The network refuses this message for good; the text is shown to the sender."""


# ----- optional capabilities, each detected on its own -----
@runtime_checkable
class GroupLinking(Protocol):
    async def resolve_group(self, address: str) -> tuple[str, str]:
        """``(remote_id, name)`` of the group chat at ``address`` (``!group link``);
        raise :class:`Refused` with the reason if it cannot be linked."""

    async def disconnect(self, portal: Portal) -> None:
        """Stop receiving the remote chat (``!group unlink``)."""


@runtime_checkable
class EditHandling(Protocol):
    async def handle_matrix_edit(
        self, portal: Portal, sender: MatrixSender, target: str, message: Message
    ) -> str:
        """Replace the network's message ``target`` with ``message``; return its ID."""


@runtime_checkable
class RedactionHandling(Protocol):
    async def handle_matrix_redaction(
        self, portal: Portal, sender: MatrixSender, target: str, event_id: str
    ) -> str | None:
        """Retract the network's message ``target``; return the retraction's own ID if
        the network gives it one (so that its echo is recognised)."""


@runtime_checkable
class FileHandling(Protocol):
    async def handle_matrix_file(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        """Send ``message.file`` to the network; return the network's message ID."""


@runtime_checkable
class LocationHandling(Protocol):
    async def handle_matrix_location(
        self, portal: Portal, sender: MatrixSender, message: Message
    ) -> str:
        """Send ``message.location``; return the network's message ID."""


@runtime_checkable
class MembershipHandling(Protocol):
    async def handle_matrix_membership(
        self, portal: Portal, sender: MatrixSender, membership: str
    ) -> None:
        """A Matrix person joined (``join``, also on a display-name change) or left
        (``leave``) a portal room."""


@runtime_checkable
class ReactionHandling(Protocol):
    async def handle_matrix_reaction(
        self, portal: Portal, sender: MatrixSender, target: str, keys: list[str]
    ) -> None:
        """The Matrix person's reactions to the network's message ``target`` are now
        ``keys`` (in the order given; empty: they took their last one back)."""


@runtime_checkable
class TypingHandling(Protocol):
    async def handle_matrix_typing(self, portal: Portal, user_ids: list[str]) -> None:
        """The Matrix people typing in the portal room are now ``user_ids``."""


@runtime_checkable
class ReadMarkerHandling(Protocol):
    async def handle_matrix_read(self, portal: Portal, sender: MatrixSender, target: str) -> None:
        """The Matrix person has read the network's message ``target``."""


CAPABILITIES: dict[str, type] = {
    "group_linking": GroupLinking,
    "edits": EditHandling,
    "redactions": RedactionHandling,
    "files": FileHandling,
    "location": LocationHandling,
    "membership": MembershipHandling,
    "reactions": ReactionHandling,
    "typing": TypingHandling,
    "read_markers": ReadMarkerHandling,
}


def capabilities(connector: Connector) -> frozenset[str]:
    """The optional capabilities ``connector`` implements, by name."""
    return frozenset(name for name, proto in CAPABILITIES.items() if isinstance(connector, proto))


REQUIRED = ("start", "stop", "connect", "handle_matrix_message")


def check_connector(connector: Any, owner: str) -> Connector:
    """Refuse, naming the plugin, anything that is not a complete connector."""
    if not isinstance(connector, Connector):
        raise TypeError(
            f"plugin {owner!r} gave {connector!r} as a network connector; it must be an "
            "instance of anywhere.plugins.groups.connector.Connector"
        )
    if not (isinstance(connector.network, str) and connector.network.isalnum()):
        raise TypeError(
            f"plugin {owner!r}: connector {type(connector).__name__} needs a `network` name "
            "of lowercase letters and digits"
        )
    return connector
