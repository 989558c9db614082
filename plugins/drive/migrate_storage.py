"""``anywhere drive migrate-storage TO_URL``: move the drive's content to another blob
store (a local folder to S3, for example).

Every blob of the current store (``plugins.settings.drive.storage_url``) is copied to the
new one, read back there and its SHA-256 checked. What the new store already holds is
checked the same way, not copied again, so a run that was interrupted is simply run
again. The switch is left to the operator, on purpose: the command ends by printing the
``storage_url`` to put in the config once every file the database names is in the new
store; the bridge reads it at its next start. Run it with the bridge stopped, or run it
once while the bridge runs (to copy the bulk), then stop the bridge and run it again
(it copies only what came meanwhile), then switch and start the bridge.

Only the built-in stores (``s3://`` and PyFilesystem2 URLs) are opened here; a store a
plugin gives is reached through the bridge only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path
from typing import TextIO

from anywhere.storage.blobs import BlobError, BlobStore
from anywhere.storage.stores import open_blob_store

COMMAND = "migrate-storage"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        COMMAND,
        help="copy the drive's content to another storage (e.g. s3://...), verified",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("to_url", metavar="TO_URL", help="the new storage, e.g. s3://bucket/drive")
    p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
    p.set_defaults(func=cmd_migrate_storage)


def cmd_migrate_storage(args: argparse.Namespace) -> int:
    from anywhere.bridge.errors import AnywhereError

    try:
        return asyncio.run(migrate_storage(args.config, args.to_url))
    except (AnywhereError, BlobError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def current_storage_url(config) -> str:
    """The configured storage, or the folder ``drive`` in the data folder (the drive's
    own default)."""
    return config.plugin_settings("drive").get("storage_url") or (
        f"osfs://{config.data_dir / 'drive'}"
    )


async def migrate_storage(config_path: Path, to_url: str, out: TextIO = sys.stdout) -> int:
    from anywhere.bridge.config import load_config
    from anywhere.storage import open_database

    config = load_config(config_path)
    from_url = current_storage_url(config)
    if to_url.rstrip("/") == from_url.rstrip("/"):
        raise BlobError(f"{to_url} is the storage the drive uses already ({config_path})")
    source = open_blob_store(from_url)
    target = open_blob_store(to_url)
    db = await open_database(config.database_url)
    try:
        swept = await target.sweep_partial()  # what an interrupted run left half-written
        if swept:
            print(f"removed {swept} unfinished write(s) of an earlier run", file=out, flush=True)
        hashes = await source.hashes()
        print(f"{len(hashes)} blob(s) in {from_url}", file=out, flush=True)
        copied = checked = 0
        for number, sha256 in enumerate(hashes, 1):
            if await target.exists(sha256) and await _holds(target, sha256):
                checked += 1
                continue
            await target.delete(sha256)  # wrong content under that name, if any
            size = await _copy(source, target, sha256)
            copied += 1
            print(
                f"copied {number}/{len(hashes)} {sha256[:12]} ({size} bytes)", file=out, flush=True
            )
        missing = [sha for sha in await _named_by_database(db) if not await target.exists(sha)]
    finally:
        await db.stop()
        await source.close()
        await target.close()
    print(f"copied {copied}, already there and verified {checked}", file=out, flush=True)
    if missing:
        print(
            f"error: {len(missing)} content(s) the database names are in neither store "
            f"(first: {missing[0][:12]}); the storage was not switched. Run `anywhere "
            "doctor`, and restore them from a backup of the old storage",
            file=out,
            flush=True,
        )
        return 1
    print(
        "every file's content is in the new storage and verified. Switch: set\n"
        f"  plugins.settings.drive.storage_url: {to_url}\n"
        f"in {config_path} (with the new storage's keys in the bridge's environment if it "
        "needs them), then start the bridge",
        file=out,
        flush=True,
    )
    return 0


async def _copy(source: BlobStore, target: BlobStore, sha256: str) -> int:
    writer = await target.writer()
    try:
        async for chunk in source.read(sha256):
            await writer.write(chunk)
    except BaseException:
        await writer.abort()
        raise
    blob = await writer.commit()
    if blob.sha256 != sha256:
        if not await source.exists(blob.sha256):
            await target.delete(blob.sha256)
        raise BlobError(
            f"the content {sha256[:12]} in the old storage does not match its SHA-256 (it "
            "is damaged); nothing was switched: restore it from a backup and run again"
        )
    if not await _holds(target, sha256):
        raise BlobError(f"the new storage gave back other bytes for {sha256[:12]} than were sent")
    return blob.size


async def _holds(store: BlobStore, sha256: str) -> bool:
    """The store gives back content whose SHA-256 is its name."""
    digest = hashlib.sha256()
    async for chunk in store.read(sha256):
        digest.update(chunk)
    return digest.hexdigest() == sha256


async def _named_by_database(db) -> set[str]:
    try:
        rows = await db.fetch(
            "SELECT sha256 FROM drive_file_version UNION SELECT sha256 FROM drive_node "
            "WHERE sha256 IS NOT NULL"
        )
    except Exception as exc:
        raise BlobError(
            f"cannot read the drive's files from the database ({type(exc).__name__}: {exc}); "
            "check database.url in the config: it must be the bridge's database, where "
            "the drive has run"
        ) from None
    return {row["sha256"] for row in rows if row["sha256"]}
