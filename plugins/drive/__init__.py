"""The drive: shared folders that must be accepted, files from chat and HTTP, sharing
into chats. See docs/drive.md."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from anywhere.bridge.api import Host
    from anywhere.storage.blobs import BlobOpener, BlobStore

    from .rooms import FolderRooms
    from .service import Drive

# The runtime parts are imported in the hooks that need them, and the marker is made
# here rather than imported from `bridge` (it is the same: pluggy matches markers by
# project name), so that the sync client (`python -m anywhere.plugins.drive.sync`, and
# `anywhere drive sync`) does not import the bridge runtime and starts quickly.
hookimpl = pluggy.HookimplMarker("anywhere")
TRASH_SWEEP_SECONDS = 3600
URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")  # RFC 3986


def collect_blob_openers(bridge: Host) -> dict[str, BlobOpener]:
    """``{scheme: opener}`` from every plugin's ``anywhere_drive_blob_stores`` (and, for
    one more release, the deprecated ``anywhere_blob_stores``); schemes in any letter
    case are one scheme."""
    from anywhere.bridge.errors import PluginLoadError

    openers: dict[str, BlobOpener] = {}
    taken: dict[str, str] = {}
    for hook in ("anywhere_drive_blob_stores", "anywhere_blob_stores"):
        given = bridge.extensions.collect(
            hook, "blob store for the URL scheme", taken, key=str.lower, bridge=bridge
        )
        for scheme, (name, opener) in given.items():
            if not (isinstance(scheme, str) and URL_SCHEME.fullmatch(scheme) and callable(opener)):
                raise PluginLoadError(
                    f"plugin {name!r}: {hook} must map URL schemes (a letter, then "
                    f"letters, digits, +, - or .) to openers, found {scheme!r}: {opener!r}"
                )
            openers[scheme], taken[scheme] = opener, name
    return openers


class DrivePlugin:
    anywhere_contract = "1.0"

    def __init__(self) -> None:
        self.bridge: Host | None = None
        self.blobs: BlobStore | None = None
        self.drive: Drive | None = None
        self.rooms: FolderRooms | None = None
        self._trash_task: asyncio.Task | None = None

    @hookimpl
    def anywhere_hookspecs(self):
        from . import hookspecs

        return hookspecs

    @hookimpl
    def anywhere_config_section(self):
        from .settings import CONFIG_SECTION

        return CONFIG_SECTION

    @hookimpl
    def anywhere_migrations(self):
        from .schema import DRIVE_MIGRATIONS

        return DRIVE_MIGRATIONS

    @hookimpl
    async def anywhere_startup(self, bridge: Host) -> None:
        from anywhere.storage.stores import open_blob_store

        from .doctor import storage_url
        from .rooms import FolderRooms
        from .service import Drive
        from .settings import DriveSettings

        section = bridge.settings("drive")
        url = storage_url(bridge)
        settings = DriveSettings(
            storage_url=url,
            quota_bytes=section["quota_bytes"],
            trash_days=section["trash_days"],
            share_blocked_kinds=list(section["share_blocked_kinds"]),
            public_url=section["public_url"],
        )
        self.bridge = bridge
        self.blobs = open_blob_store(url, collect_blob_openers(bridge))
        swept = await self.blobs.sweep_partial()
        if swept:
            bridge.log.info("removed unfinished uploads", plugin="drive", count=swept)
        self.drive = Drive(bridge.db, self.blobs, settings, bridge.authorize)
        self.rooms = FolderRooms(bridge, self.drive)
        self._trash_task = asyncio.create_task(self._tidy(settings.trash_days))

    async def _tidy(self, days: int) -> None:
        """Once at start-up: content an interrupted upload left goes; content no version
        uses is counted and reported, never deleted. Then now and every hour (when
        ``days`` is set): what has been in a trash longer than ``days`` days goes."""
        log = self.bridge.log
        try:
            removed = await self.drive.finish_interrupted_uploads()
            if removed:
                log.info("removed content of interrupted uploads", plugin="drive", blobs=removed)
            unused = await self.drive.unused_content()
            if unused:
                log.warning(
                    "stored content that no file uses was found and kept; if this database "
                    "is not the one the drive's files were recorded in, check database.url",
                    plugin="drive",
                    blobs=unused,
                    storage=self.drive.settings.storage_url,
                )
        except Exception:
            log.exception("checking the drive's content at start-up failed", plugin="drive")
        while days:
            try:
                count, freed = await self.drive.empty_expired_trash(days)
                if count:
                    self.bridge.log.info(
                        "emptied expired trash", plugin="drive", items=count, freed_bytes=freed
                    )
            except Exception:
                self.bridge.log.exception("emptying expired trash failed", plugin="drive")
            await asyncio.sleep(TRASH_SWEEP_SECONDS)

    @hookimpl
    async def anywhere_doctor(self, bridge: Host):
        from .doctor import check_storage

        return [await check_storage(bridge)]

    @hookimpl
    async def anywhere_shutdown(self, bridge: Host) -> None:
        if self._trash_task is not None:
            self._trash_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trash_task
        if self.blobs is not None:
            await self.blobs.close()

    @hookimpl
    def anywhere_commands(self):
        from .commands import DriveCommands

        return [DriveCommands(self).command()]

    @hookimpl
    def anywhere_job_handlers(self) -> dict[str, Any]:
        from .rooms import SAVE_FROM_CHAT

        return {SAVE_FROM_CHAT: self.save_from_chat}

    async def save_from_chat(self, job) -> None:
        await self.rooms.save_from_chat(job)

    @hookimpl
    def anywhere_event_handlers(self) -> dict[str, Any]:
        return {"m.room.member": self.on_member, "m.room.message": self.on_message}

    async def on_member(self, event, ctx) -> None:
        await self.rooms.on_member(event, ctx)

    async def on_message(self, event, ctx) -> None:
        await self.rooms.on_message(event, ctx)

    @hookimpl
    def anywhere_cli(self, subparsers) -> None:
        from .sync.cli import add_parsers

        add_parsers(subparsers)

    @hookimpl
    def anywhere_web_routes(self, bridge: Host, app) -> None:
        from .http_api import add_routes
        from .webapp import pages
        from .webdav.server import DavServer

        add_routes(self, app)
        DavServer(self).add_routes(app)
        pages.add_routes(bridge, app)


plugin = DrivePlugin()
