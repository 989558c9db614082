"""What a network connector gets (docs/networks.md, "What the hub offers"):
:class:`ConnectorHost`, the part of the groups plugin a connector may use, given to
``Connector.start(hub, settings)``.

The groups plugin's :class:`~anywhere.plugins.groups.hub.Hub` is the host; a connector uses these
members and nothing else of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from anywhere.bridge.api import Host

    from .messages import FileData, MatrixSender, Message, Portal, RemoteUser


@runtime_checkable
class ConnectorHost(Protocol):
    #: the bridge (``bridge.log``, ``bridge.config``, ``bridge.db``…: the plugin API)
    bridge: Host
    #: the groups plugin's settings (``max_file_bytes``, ``max_body_chars``, ``limits``…)
    settings: dict[str, Any]

    def network_up(self, network: str) -> None:
        """Call after every (re)connection: the outbox sends what waited."""

    def portal_for_remote(
        self, network: str, remote_id: str, matrix_user: str | None = None
    ) -> Portal | None:
        """The portal of a remote group (``matrix_user`` None), or the 1:1 portal between
        a remote person and a Matrix person, if there is one."""

    async def direct_portal(self, network: str, remote: RemoteUser, matrix_user: str) -> Portal:
        """The 1:1 portal (created by the ghost, inviting the person); raises
        :class:`~anywhere.plugins.groups.connector.Refused` saying why it cannot be."""

    async def remote_message(self, portal: Portal, sender: RemoteUser, message: Message) -> None:
        """Post as the sender's ghost; a message ID seen before (an echo) is dropped."""

    async def remote_edit(
        self, portal: Portal, sender: RemoteUser, target: str, message: Message
    ) -> None:
        """An ``m.replace`` of the bridged event ``target``."""

    async def remote_retraction(
        self, portal: Portal, sender: RemoteUser, target: str, retraction_id: str
    ) -> None:
        """Redact the bridged event ``target``."""

    async def remote_reactions(
        self, portal: Portal, sender: RemoteUser, target: str, keys: list[str], update_id: str
    ) -> None:
        """The sender's reactions to ``target`` are now ``keys``."""

    async def remote_membership(self, portal: Portal, user: RemoteUser, membership: str) -> None:
        """The person joined (``join``; also a new name) or left (``leave``)."""

    async def remote_typing(self, portal: Portal, sender: RemoteUser, typing: bool) -> None:
        """The ghost types (for up to 30 s) or stops."""

    async def remote_read(self, portal: Portal, sender: RemoteUser, target: str) -> None:
        """The ghost's read receipt moves to the bridged message ``target``."""

    async def remote_avatar(
        self,
        portal: Portal,
        user: RemoteUser,
        avatar_hash: str,
        fetch: Callable[[], Awaitable[FileData | None]],
    ) -> None:
        """When ``avatar_hash`` is new, ``await fetch()`` becomes the ghost's avatar."""

    async def fetch_url(self, url: str, allowed_prefixes: list[str]) -> FileData | None:
        """A linked file (size-capped) if it is under one of ``allowed_prefixes``."""

    async def matrix_sender(self, room_id: str, user_id: str) -> MatrixSender:
        """A Matrix person as shown in ``room_id`` (name, avatar)."""

    async def matrix_profile(self, user_id: str) -> MatrixSender | None:
        """A Matrix person's global name and avatar, or None."""

    async def matrix_avatar(self, mxc: str) -> FileData | None:
        """A Matrix person's avatar picture (≤ 1 MiB), or None."""
