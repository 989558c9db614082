"""``anywhere doctor``'s check of the drive: its storage takes, gives back and removes
content."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from anywhere.bridge.api import DoctorCheck
from anywhere.storage.stores import open_blob_store

if TYPE_CHECKING:
    from anywhere.bridge.api import Host

NAME = "drive storage"
FIX = (
    "set plugins.settings.drive.storage_url to a place the bridge's user can write, "
    "e.g. osfs:///var/lib/anywhere/drive"
)


def storage_url(bridge: Host) -> str:
    """``storage_url``, or the folder ``drive`` in the data folder when it is empty."""
    return bridge.settings("drive")["storage_url"] or f"osfs://{bridge.info.data_dir / 'drive'}"


async def check_storage(bridge: Host) -> DoctorCheck:
    from . import collect_blob_openers

    url = storage_url(bridge)
    try:
        store = open_blob_store(url, collect_blob_openers(bridge))
    except Exception as exc:
        return DoctorCheck.fail(NAME, f"cannot open {url}: {exc}", FIX)
    probe = b"anywhere doctor " + os.urandom(16)  # content of its own: nothing else uses it
    try:
        writer = await store.writer()
        await writer.write(probe)
        blob = await writer.commit()
        try:
            back = b"".join([chunk async for chunk in store.read(blob.sha256)])
        finally:
            await store.delete(blob.sha256)
        gone = not await store.exists(blob.sha256)
        free = free_bytes(store)
    except Exception as exc:
        return DoctorCheck.fail(
            NAME, f"{url}: storing a probe failed ({type(exc).__name__}: {exc})", FIX
        )
    finally:
        await store.close()
    if back != probe or not gone:
        return DoctorCheck.fail(
            NAME, f"{url}: the probe came back {'changed' if back != probe else 'undeletable'}"
        )
    text = f"{url}: a probe was stored, read back and removed"
    if free is None:
        return DoctorCheck.ok(NAME, text)
    text += f"; {free / 1e9:.1f} GB free"
    quota = bridge.settings("drive")["quota_bytes"]
    if free < quota:
        return DoctorCheck.warn(
            NAME,
            f"{text}, less than one person's quota ({quota / 1e9:.1f} GB)",
            "make room, or lower plugins.settings.drive.quota_bytes",
        )
    return DoctorCheck.ok(NAME, text)


def free_bytes(store) -> int | None:
    """Free space where a store on the local disk keeps content; None elsewhere."""
    filesystem = getattr(store, "fs", None)
    if filesystem is None or not filesystem.hassyspath("/"):
        return None
    return shutil.disk_usage(filesystem.getsyspath("/")).free
