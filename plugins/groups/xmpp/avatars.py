"""Avatars across the XMPP bridge: Matrix people's pictures for XMPP (the photo hash in
their presence, XEP-0153, and vCard answers, XEP-0054), and XMPP occupants' vCard photos
for their ghosts."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from ..connector import FileData, MatrixSender, Portal, RemoteUser
from . import stanzas
from .addresses import NETWORK, XmppAddresses

if TYPE_CHECKING:
    from ..host import ConnectorHost

log = structlog.get_logger("anywhere.groups.xmpp")


class Avatars:
    """Given the host (None until the connector starts), the connector's addresses and
    ``stream()``: the XMPP stream while connected, else None."""

    def __init__(
        self, host: ConnectorHost | None, addresses: XmppAddresses, stream: Callable[[], Any]
    ) -> None:
        self.hub = host
        self.addresses = addresses
        self.stream = stream
        # Matrix person → (their avatar's mxc, the image as (mimetype, bytes), its SHA-1)
        self._photos: dict[str, tuple[str | None, tuple[str, bytes] | None, str]] = {}
        self._names: dict[str, str] = {}  # Matrix person → the name their vCard gives
        self._answering: set[asyncio.Task] = set()

    # ----- Matrix people, for XMPP -----
    def known_hash(self, user_id: str) -> str:
        """The photo hash last announced for the person ("" for none or not yet)."""
        return self._photos.get(user_id, (None, None, ""))[2]

    async def photo_hash(self, sender: MatrixSender) -> str:
        """The SHA-1 of the Matrix person's avatar ("" for none), fetched when it changed."""
        self._names[sender.user_id] = sender.displayname
        known = self._photos.get(sender.user_id)
        if known is not None and known[0] == sender.avatar_url:
            return known[2]
        photo, digest = None, ""
        hub = self.hub
        if sender.avatar_url and hub is not None:
            image = await hub.matrix_avatar(sender.avatar_url)
            if image is not None:
                photo = (image.mimetype, image.data)
                digest = hashlib.sha1(image.data).hexdigest()  # noqa: S324 (XEP-0153 says SHA-1)
        self._photos[sender.user_id] = (sender.avatar_url, photo, digest)
        return digest

    def on_vcard_request(self, iq: Any) -> None:
        """Someone asks for a Matrix person's vCard (their client, or a room passing on
        the question to an occupant): their display name and avatar."""
        task = asyncio.create_task(self._answer_vcard(iq))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_vcard(self, iq: Any) -> None:
        hub = self.hub
        user_id = self.addresses.matrix_user_of(iq["to"])
        if user_id is None:
            reply = iq.reply(clear=True)
            reply.error()
            reply["error"]["type"] = "cancel"
            reply["error"]["condition"] = "item-not-found"
            reply.send()
            return
        asker = JID(iq["from"]).bare
        if (
            user_id not in self._photos
            and hub is not None
            and hub.portal_for_remote(NETWORK, asker, user_id) is not None
        ):
            # a 1:1 contact who has not written yet: their profile on the homeserver (only
            # for the person they chat with; others learn a name and avatar from rooms)
            profile = await hub.matrix_profile(user_id)
            if profile is not None:
                await self.photo_hash(profile)
        photo = self._photos.get(user_id, (None, None, ""))[1]
        name = self._names.get(user_id) or user_id.removeprefix("@").split(":")[0]
        reply = iq.reply(clear=True)
        reply.append(stanzas.vcard(name, photo))
        reply.send()

    # ----- XMPP people, for Matrix -----
    async def remote_photo(
        self, portal: Portal, user: RemoteUser, occupant: str, avatar_hash: str
    ) -> None:
        """The occupant's vCard photo (XEP-0054, asked through the room, which passes the
        question to the person's server) as their ghost's avatar, when its hash is new."""
        hub = self.hub

        async def fetch() -> FileData | None:
            stream = self.stream()
            if stream is None:
                return None
            iq = stream.make_iq_get(ito=occupant, ifrom=self.addresses.relay_jid)
            iq.append(stanzas.element(stanzas.NS_VCARD, "vCard"))
            try:
                result = await iq.send(timeout=10)
            except (IqError, IqTimeout) as exc:
                log.info("no vCard for an occupant", occupant=occupant, error=str(exc))
                return None
            photo = stanzas.vcard_photo(result.xml)
            if photo is None or len(photo[1]) > hub.settings["max_file_bytes"]:
                return None
            extension = photo[0].removeprefix("image/").split("+")[0] or "png"
            return FileData(f"avatar.{extension}", photo[0], photo[1])

        await hub.remote_avatar(portal, user, avatar_hash, fetch)
