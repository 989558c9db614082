"""The data a connector and the hub exchange: portals, senders, remote people, messages.

Connectors import these from :mod:`anywhere.plugins.groups.connector` (where they are named
too); they live here so that the connector interface and the hub's
:class:`~anywhere.plugins.groups.host.ConnectorHost` can both use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUP = "group"
DIRECT = "dm"


@dataclass(frozen=True)
class Portal:
    """One Matrix room bridged to one remote chat."""

    network: str
    remote_id: str  # the remote group's address, or the remote person's for a 1:1 chat
    room_id: str
    kind: str = GROUP
    matrix_user: str | None = None  # the Matrix person of a 1:1 chat


@dataclass(frozen=True)
class MatrixSender:
    user_id: str
    displayname: str
    avatar_url: str | None = None  # mxc:// of their avatar in the portal room, if any


@dataclass(frozen=True)
class RemoteUser:
    """A person on the network. ``id`` must be stable (it names their ghost user)."""

    id: str
    name: str


@dataclass(frozen=True)
class FileData:
    name: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    description: str = ""

    @property
    def geo_uri(self) -> str:
        return f"geo:{self.latitude:.6f},{self.longitude:.6f}"


@dataclass
class Message:
    """A message either way. ``id`` is the Matrix event ID (to the network) or the
    network's message ID (from it); ``reply_to`` is the other side's ID of the message
    replied to, when the hub knows it."""

    id: str
    text: str
    html: str | None = None
    reply_to: str | None = None
    file: FileData | None = None
    location: Location | None = None
    extra: dict[str, Any] = field(default_factory=dict)
