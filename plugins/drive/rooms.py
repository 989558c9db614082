"""The drive on the Matrix side: one room per shared folder, managed by the bot.

Sharing a folder invites the person to its room (the invite carries who shares what,
with which role); joining the room accepts, rejecting the invite declines, leaving
leaves the share, and the owner's revoke removes the person from the room. Files sent
into the room are stored in the folder; files are posted into rooms through the
homeserver's media repository, or as a link when they are larger than it accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mautrix.types import EventType, RoomCreatePreset

from anywhere.bridge import EventContext, MatrixEvent, MediaError
from anywhere.storage.blobs import BlobError

from .errors import Denied, DriveError
from .model import Folder, Node, human_size
from .names import InvalidName
from .service import Drive
from .webapp import widget as webapp_widget

if TYPE_CHECKING:
    from anywhere.bridge.api import Host, QueuedJob

FILE_MSGTYPES = frozenset({"m.file", "m.image", "m.audio", "m.video"})
#: The signing purpose of shared links (the key it names signed links before the
#: signing service existed, so links posted then still work).
LINK_PURPOSE = "drive-links"


SAVE_FROM_CHAT = "drive.save_from_chat"


class FolderRooms:
    def __init__(self, bridge: Host, drive: Drive) -> None:
        self.bridge = bridge
        self.drive = drive

    # ----- folders and their rooms -----
    async def create_folder(self, owner: str, name: str) -> Folder:
        """A new top-level folder and its room, with the owner invited."""
        name = await self.drive.access.check_new_folder(owner, name)
        public_url = self.drive.settings.public_url
        room_id = await self.bridge.bot.create_room(
            preset=RoomCreatePreset.PRIVATE,
            name=f"{name} (drive)",
            topic=(
                f"Shared drive folder {name!r}, owned by {owner}. Files sent here are "
                "saved in the folder; send !drive help for the commands. In the browser: "
                f"{webapp_widget.app_url(self.bridge, public_url)}"
            ),
            invitees=[owner],
            # A "Files" widget (Element) opening the web app on this folder.
            initial_state=[webapp_widget.widget_state(self.bridge, public_url, name)],
            # Only the bot (the room's creator) invites and removes people: room
            # membership is the share. The owner may turn encryption on (Element's room
            # settings): files then come in and go out encrypted.
            power_level_override={
                "users": {owner: 50},
                "events": {"m.room.encryption": 50},
                "invite": 100,
                "kick": 100,
                "ban": 100,
                "state_default": 100,
            },
        )
        return await self.drive.access.create_folder(owner, name, room_id)

    async def invite(self, folder: Folder, actor: str, user_id: str, role: str) -> str:
        if folder.room_id is None:
            raise DriveError(f"{folder.name} has no room to invite to")
        if actor != folder.owner:
            raise Denied(f"only the owner ({folder.owner}) can share {folder.name!r}")
        decision = await self.bridge.authorize(
            actor, "drive.invite", user_id, {"folder": folder.id}
        )
        if not decision.allowed:
            raise DriveError(f"inviting {user_id} is refused: {decision.reason}")
        await self.drive.check_folder_share(actor, folder)  # the costly check after the cheap
        before = await self.drive.access.member(folder.id, user_id)
        member = await self.drive.access.invite(folder, actor, user_id, role)
        if before is not None and before.state == "joined":
            return f"{user_id} is now {role} of {folder.name}."
        message = (
            f"{actor} shares the folder {folder.name!r} with you as {role}. Join this room to "
            "accept; reject the invite to decline."
        )
        try:
            await self.bridge.bot.invite_user(folder.room_id, user_id, reason=message)
        except Exception as exc:
            await self.drive.access.set_state(folder.id, user_id, "declined")
            raise DriveError(f"could not invite {user_id}: {exc}") from exc
        return (
            f"Invited {member.user_id} to {folder.name} as {member.role}; they get access once "
            "they accept (join the folder's room)."
        )

    async def revoke(self, folder: Folder, actor: str, user_id: str) -> str:
        await self.drive.access.revoke(folder, actor, user_id)
        if folder.room_id:
            try:
                await self.bridge.bot.kick_user(
                    folder.room_id, user_id, reason=f"{actor} stopped sharing {folder.name}"
                )
            except Exception as exc:  # already gone: the share is revoked all the same
                self.bridge.log.info("kick after revoke failed", user=user_id, error=str(exc))
        return f"{user_id} no longer has access to {folder.name}."

    async def leave(self, folder: Folder, user_id: str) -> str:
        if user_id == folder.owner:
            raise DriveError("you own this folder; owners cannot leave it")
        await self.drive.access.require(folder, user_id)
        await self.drive.access.set_state(folder.id, user_id, "left")
        if folder.room_id:
            try:
                await self.bridge.bot.kick_user(folder.room_id, user_id, reason="left the share")
            except Exception as exc:
                self.bridge.log.info("kick after leave failed", user=user_id, error=str(exc))
        return f"You left {folder.name}."

    async def on_member(self, event: MatrixEvent, ctx: EventContext) -> None:
        user_id = event.state_key
        if not user_id or self.bridge.is_ours(user_id):
            return
        folder = await self.drive.access.folder_for_room(event.room_id)
        if folder is None:
            return
        membership = event.content.get("membership", "")
        new_state = await self.drive.access.membership_changed(folder, user_id, membership)
        if new_state == "joined":
            member = await self.drive.access.member(folder.id, user_id)
            await ctx.notice(event.room_id, f"{user_id} accepted: {member.role} of {folder.name}.")
        elif new_state == "left":
            await ctx.notice(event.room_id, f"{user_id} left the share of {folder.name}.")
        elif new_state == "declined":
            ctx.log.info("share declined", folder=folder.id, user=user_id)

    # ----- files from chat -----
    async def on_message(self, event: MatrixEvent, ctx: EventContext) -> None:
        """A file posted in a folder's room is saved into the folder — by a background
        job, so that fetching a large file holds up no other event."""
        content = event.content
        if content.get("msgtype") not in FILE_MSGTYPES or self.bridge.is_ours(event.sender):
            return
        folder = await self.drive.access.folder_for_room(event.room_id)
        if folder is None:
            return
        url = content.get("url")
        if not isinstance(content.get("file"), dict) and not (
            isinstance(url, str) and url.startswith("mxc://")
        ):
            await ctx.reply("I can't save this file: its message has no mxc:// URL.")
            return
        await self.bridge.jobs.enqueue(
            SAVE_FROM_CHAT,
            {"event": event.raw, "txn_id": event.txn_id},
            key=f"{SAVE_FROM_CHAT}:{event.event_id}",
        )

    async def save_from_chat(self, job: QueuedJob) -> None:
        """The job: fetch the file from the homeserver and store it as a new version
        (once per event: a repeat finds the file it saved), then say so in the room."""
        event = MatrixEvent(job.payload["event"], job.payload.get("txn_id", ""))
        ctx = EventContext(self.bridge, event, "drive")
        content = event.content
        folder = await self.drive.access.folder_for_room(event.room_id)
        if folder is None:
            return  # the folder went meanwhile
        name = content.get("filename") or content.get("body") or ""
        info = content.get("info") if isinstance(content.get("info"), dict) else {}
        size = info.get("size") if isinstance(info.get("size"), int) else None
        try:
            node, added = await self.drive.upload(
                event.sender,
                folder,
                name,
                self.download(content),
                declared_size=size,
                mime=info.get("mimetype") if isinstance(info.get("mimetype"), str) else None,
                source=event.event_id,
            )
        except (DriveError, InvalidName, BlobError) as exc:
            await ctx.reply(f"Not saved: {exc}")
            return
        if added:
            text = (
                f"Saved {node.name} in {folder.name} ({human_size(node.size)}, "
                f"version {node.version_no})."
            )
            quota = await self.drive.quota(folder.owner)
            if quota.nearly_full:  # before uploads start being refused
                whose = "Your drive" if folder.owner == event.sender else "The owner's drive"
                text += f" {whose} is {quota.describe()}; uploads past it are refused."
            await ctx.reply(text)

    async def download(self, content: dict[str, Any]) -> AsyncIterator[bytes]:
        """The file of a message, plain (decrypted in encrypted rooms, its hash checked)."""
        try:
            async for chunk in self.bridge.media.download_content(content):
                yield chunk
        except MediaError as exc:
            if exc.temporary:  # the homeserver's trouble: the job tries again later
                raise ConnectionError(str(exc)) from exc
            raise DriveError(str(exc)) from exc

    # ----- files into chat -----
    async def upload_limit(self) -> int | None:
        return await self.bridge.media.upload_limit()

    @staticmethod
    def _link_message(room_id: str, node_id: str, version: int, sharer: str) -> str:
        return f"{room_id}|{node_id}|{version}|{sharer}"

    def link_signature(self, room_id: str, node_id: str, version: int, sharer: str) -> str:
        message = self._link_message(room_id, node_id, version, sharer)
        return self.bridge.signer.signature(message, LINK_PURPOSE)

    def link_is_valid(
        self, room_id: str, node_id: str, version: int, sharer: str, signature: str
    ) -> bool:
        message = self._link_message(room_id, node_id, version, sharer)
        return self.bridge.signer.verify(message, LINK_PURPOSE, signature)

    def link(self, node: Node, room_id: str, sharer: str) -> str:
        """A link to this version of the file for the members of ``room_id`` (they log in
        with their Matrix account; nobody else can use it), working while the file is
        out of the trash and ``sharer`` (who posted it) still has access to its folder."""
        base = self.drive.settings.public_url or self.bridge.info.bridge_url
        sig = self.link_signature(room_id, node.id, node.version_no, sharer)
        return (
            f"{base.rstrip('/')}/_anywhere/drive/v1/shared/{quote(room_id, safe='')}/"
            f"{node.id}/{node.version_no}/{quote(sharer, safe='')}/{sig}"
        )

    async def post_file(self, ctx: EventContext, room_id: str, node: Node, as_of: str) -> str:
        """Post ``node`` into ``room_id`` as a file message, or a link when too large."""
        limit = await self.upload_limit()
        if limit is not None and node.size > limit:
            link = self.link(node, room_id, as_of)
            text = (
                f"{node.name} ({human_size(node.size)}) is larger than this homeserver accepts "
                f"({human_size(limit)}); download it from the drive: {link}"
            )
            await ctx.notice(room_id, text)
            return "link"
        where = await self.bridge.media.upload(
            room_id,
            self.drive.content(node),
            intent=self.bridge.bot,
            mime_type=node.mime,
            filename=node.name,
            size=node.size,
        )
        msgtype = _msgtype_for(node.mime)
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": node.name,
            "filename": node.name,
            **where,  # "url", or "file" in an encrypted room
            "info": {"size": node.size, "mimetype": node.mime or "application/octet-stream"},
            "org.anywhere.drive": {"node": node.id, "sha256": node.sha256, "from": as_of},
        }
        await ctx.send(room_id, content)
        return "file"

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        try:
            state = await self.bridge.bot.get_state_event(room_id, EventType.ROOM_MEMBER, user_id)
        except Exception:
            return False
        membership = getattr(state, "membership", None)
        return getattr(membership, "value", membership) == "join"

    async def others_in(self, room_id: str, user_id: str) -> bool:
        """True when people besides ``user_id`` and the bot are in the room."""
        members = await self.bridge.bot.get_joined_members(room_id)
        return any(m != user_id and not self.bridge.is_ours(m) for m in members)


def _msgtype_for(mime: str | None) -> str:
    major = (mime or "").split("/", 1)[0]
    return {"image": "m.image", "audio": "m.audio", "video": "m.video"}.get(major, "m.file")
