"""Resumable uploads: an upload session takes a large file in pieces, keeps every piece
it was given on disk (flushed to stable storage before it answers), and says what it
kept after a cut-off; once every byte is there, the file is stored as any upload is
(quota, the copyright rule, versions).

- ``POST .../folders/{folder}/uploads`` ``{"path", "size", "mime"?}`` → 201 ``{"id",
  "offset": 0, "kept": [], ...}``
- ``GET .../uploads/{id}`` → what is kept: ``kept``, the ranges ``[start, end)``, and
  ``offset``, the end of the first one (the bytes kept from the start)
- ``PATCH .../uploads/{id}`` with ``Upload-Offset: N``, ``Content-Length`` and the bytes
  from N → ``{"offset", "kept"}``; once every byte is kept, the stored file (``"done":
  true``, ``"node"``). Pieces may come at the same time on several connections, in any
  order; a piece that overlaps what is kept or arriving is refused (409, with
  ``Upload-Offset`` the first byte missing).
- ``DELETE .../uploads/{id}`` gives up (the kept bytes are removed).

The bytes go into ONE staging file, each piece written at its place, in the blob store's
staging folder when it has one (:func:`anywhere.storage.blobs.staging_folder`; the
filesystem store's ``staging/``), else ``<data_dir>/drive-uploads/``. A piece is made
durable (fsync) before it is acknowledged, and its range is then appended to a journal,
``<data_dir>/drive-uploads/<id>.kept`` (also fsynced): what the journal names is what is
kept, whatever happens to the bridge. The session itself is ``<id>.json`` beside it. A
session not continued for ``UPLOAD_KEEP_SECONDS`` is removed when the next one starts.
Only the person who started an upload can see or continue it.

While the bridge runs, one task per upload hashes the bytes in order as they arrive (from
the page cache) and holds the owner's quota; after a restart it hashes what was kept
once, when the upload is continued. The last piece hands the staging file to the blob
store whole (:func:`anywhere.storage.blobs.adopt_file`): renamed into place by the
filesystem store, streamed by stores that cannot take a file (S3)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from anywhere.storage.blobs import staging_folder

from ..errors import Conflict, DriveError, NotFound, QuotaExceeded
from ..http_common import authenticated, etag, folder_of, json_body, plugin_of, required
from ..names import split_path
from ..sync.local import file_sha256

if TYPE_CHECKING:
    from ..model import Folder, Node
    from ..service import Drive

#: Bytes read and hashed at a time.
CHUNK = 1 << 20
#: Bytes gathered from the connection before they are written at once (a thread hop
#: per megabyte, not per small read of the socket).
WRITE_BUFFER = 1 << 20
#: An upload session not continued for this long is removed.
UPLOAD_KEEP_SECONDS = 24 * 3600
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass
class Piece:
    """A piece being received: ``[offset, end)`` announced, written up to ``written``."""

    offset: int
    end: int
    written: int


class InOrderHash:
    """The SHA-256 of a file written in pieces, fed in order: bytes written at the point
    hashing has reached are hashed as they are written (no reading back); bytes written
    ahead are read back from the file (the page cache) once the bytes before them are
    hashed. One step at a time: a step runs to its end even if its caller is cancelled
    (see :func:`_to_the_end`), so the hash and its position always agree."""

    def __init__(self) -> None:
        self.position = 0
        self.busy = False
        self._sha = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    async def write(self, handle: int, data: bytes | bytearray, position: int) -> None:
        """Write ``data`` at ``position`` in the file; hash it too when it comes next."""
        if position != self.position or self.busy:
            await _to_the_end(asyncio.to_thread(_write_at, handle, data, position))
            return
        await self._step(_write_and_hash, handle, data, position)

    async def read_back(self, handle: int, length: int) -> int:
        """Hash up to ``length`` bytes from the file where hashing is; how many."""
        return await self._step(_read_and_hash, handle, length, self.position)

    async def _step(self, work: Any, handle: int, data: Any, position: int) -> int:
        self.busy = True

        async def step() -> int:
            try:
                done = await asyncio.to_thread(work, handle, self._sha, data, position)
                self.position = position + done
                return done
            finally:
                self.busy = False

        return await _to_the_end(step())


async def _to_the_end(work: Any) -> Any:
    """Await ``work`` (a thread using a file handle); if the caller is cancelled, the work
    still ends before the cancellation goes on, so that the caller's ``finally`` never
    closes a handle a thread is using."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class Upload:
    """One upload session: its staging file, the journal of what is kept, the pieces
    arriving now, and the task that hashes the bytes in order and stores the file
    (started by the first piece this process receives)."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.id: str = meta["id"]
        self.size: int = meta["size"]
        self.path = Path(meta["staged"])
        self.journal = root / f"{self.id}.kept"
        self.ranges = _merged(_read_journal(self.journal))
        self.arriving: dict[int, Piece] = {}
        self._numbers = itertools.count()
        self.changed = asyncio.Condition()
        self.store: asyncio.Task[Node] | None = None
        self.hash = InOrderHash()
        #: set when bytes already hashed were not kept: hash the whole file at the end
        self.rehash = False

    def kept(self) -> list[list[int]]:
        """The ranges ``[start, end)`` kept (durably, next ones joined)."""
        return [list(r) for r in self.ranges]

    def first_missing(self) -> int:
        return self.ranges[0][1] if self.ranges and self.ranges[0][0] == 0 else 0

    def complete(self) -> bool:
        if self.arriving:
            return False
        return self.size == 0 or self.ranges == [[0, self.size]]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "folder": self.meta["folder"],
            "path": self.meta["path"],
            "size": self.size,
            "offset": self.first_missing(),
            "kept": self.kept(),
        }

    def begin_piece(self, offset: int, length: int) -> int:
        """Note a piece ``[offset, offset + length)`` arriving; its number.
        :class:`Conflict` when it overlaps what is kept or arriving."""
        end = offset + length
        if offset < 0 or end > self.size:
            raise DriveError(
                f"the piece [{offset}, {end}) is outside the file's announced size "
                f"({self.size} bytes)"
            )
        taken = [*self.ranges, *([p.offset, p.end] for p in self.arriving.values())]
        for piece_start, piece_end in sorted(taken):
            if piece_start < end and offset < piece_end:
                raise Conflict(
                    f"this upload already has bytes from {piece_start} to {piece_end} (it "
                    f"keeps {self.kept()}); send a piece of what is missing, such as "
                    f"Upload-Offset: {self.first_missing()}",
                    headers={"Upload-Offset": str(self.first_missing())},
                )
        number = next(self._numbers)
        self.arriving[number] = Piece(offset, end, offset)
        return number

    async def wrote(self, number: int, written: int) -> None:
        async with self.changed:
            self.arriving[number].written = written
            self.changed.notify_all()

    async def end_piece(self, number: int, durable: int) -> None:
        """The piece ended (whole or cut off) and its bytes up to ``durable`` are safely
        stored: journal them."""
        piece = self.arriving[number]
        if durable < piece.written and self.hash.position > durable:
            self.rehash = True  # bytes hashed were not kept: they may come again, changed
        try:
            if durable > piece.offset:
                line = f"{piece.offset} {durable}\n".encode()
                await asyncio.to_thread(_append_durably, self.journal, line)
                self.ranges = _merged([*self.ranges, [piece.offset, durable]])
        finally:
            async with self.changed:
                self.arriving.pop(number, None)
                self.changed.notify_all()

    async def settled(self) -> None:
        """Until no piece is arriving (a piece cut off ends first)."""
        async with self.changed:
            await self.changed.wait_for(lambda: not self.arriving)

    def start_storing(self, drive: Drive, user: str, folder: Folder) -> asyncio.Task[Node]:
        if self.store is None or (self.store.done() and self.store.exception() is not None):
            self.store = asyncio.create_task(
                drive.upload_staged(user, folder, self.meta["path"], self, mime=self.meta["mime"])
            )
        return self.store

    # ----- what the drive asks of staged content (anywhere.plugins.drive.service.Staged)
    async def finished(self) -> str:
        """Hash the bytes in order as they are written (from the start again after a
        restart); once every byte is kept: the SHA-256."""
        if self.size == 0:
            await asyncio.to_thread(_create_empty, self.path)
        else:
            handle = None
            try:
                while self.hash.position < self.size:
                    async with self.changed:
                        await self.changed.wait_for(
                            lambda: self.hash.position >= self.size or self._to_read_back()
                        )
                    if handle is None:
                        handle = await asyncio.to_thread(os.open, self.path, os.O_RDONLY)
                    until, at = self._to_read_back(), self.hash.position  # (now: no await)
                    if not until:
                        continue  # hashed as written meanwhile
                    if not await self.hash.read_back(handle, min(CHUNK, until - at)):
                        raise DriveError(
                            f"the upload's staging file {self.path} lost bytes after "
                            f"{at}; give the upload up and start again"
                        )
            finally:
                if handle is not None:
                    os.close(handle)
        async with self.changed:
            await self.changed.wait_for(self.complete)
        if self.rehash:
            return await asyncio.to_thread(file_sha256, self.path)
        return self.hash.hexdigest()

    def _to_read_back(self) -> int:
        """Where the bytes written from where hashing is end, when they are to be read
        back (0: none, or being hashed as they are written)."""
        return 0 if self.hash.busy else self._written_from_hashed()

    def _written_from_hashed(self) -> int:
        """The end of the bytes written from where hashing is (0: none yet)."""
        at = self.hash.position
        for start, end in self.ranges:
            if start <= at < end:
                return end
        for piece in self.arriving.values():
            if piece.offset <= at < piece.written:
                return piece.written
        return 0

    async def head(self, length: int) -> bytes:
        def read() -> bytes:
            with open(self.path, "rb") as handle:
                return handle.read(length)

        return await asyncio.to_thread(read)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        for path in self.root.glob(f"{self.id}.*"):
            path.unlink(missing_ok=True)


def _merged(ranges: list[list[int]]) -> list[list[int]]:
    joined: list[list[int]] = []
    for start, end in sorted(ranges):
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return joined


def _read_journal(path: Path) -> list[list[int]]:
    """The ranges a journal names (a line cut off by a crash is not one)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    ranges = []
    for line in text.split("\n")[:-1]:  # only lines that were ended
        start, _, end = line.partition(" ")
        if start.isdigit() and end.isdigit() and int(start) < int(end):
            ranges.append([int(start), int(end)])
    return ranges


def _append_durably(path: Path, line: bytes) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(handle, line)
        os.fdatasync(handle)
    finally:
        os.close(handle)


def _read_and_hash(handle: int, sha: Any, length: int, position: int) -> int:
    data = os.pread(handle, length, position)
    sha.update(data)
    return len(data)


def _write_and_hash(handle: int, sha: Any, data: bytes, position: int) -> int:
    _write_at(handle, data, position)
    sha.update(data)
    return len(data)


def _write_at(handle: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(handle, view, position)
        view, position = view[done:], position + done


def _create_empty(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


@dataclass
class UploadSessions:
    """The upload sessions this bridge process has seen (read from disk on first use)."""

    uploads: dict[str, Upload] = field(default_factory=dict)

    def get(self, root: Path, meta: dict[str, Any]) -> Upload:
        upload = self.uploads.get(meta["id"])
        if upload is None:
            upload = self.uploads[meta["id"]] = Upload(root, meta)
        return upload

    def forget(self, upload_id: str) -> None:
        upload = self.uploads.pop(upload_id, None)
        if upload is not None and upload.store is not None and not upload.store.done():
            upload.store.cancel()

    def remove_stale(self, root: Path, staging: Path) -> None:
        """Remove the sessions not continued for ``UPLOAD_KEEP_SECONDS`` (and staging
        files no session names, as old)."""
        cutoff = time.time() - UPLOAD_KEEP_SECONDS
        for meta_path in root.glob("*.json"):
            upload_id = meta_path.stem
            files = [*root.glob(f"{upload_id}.*"), staging / f"{upload_id}.part"]
            newest = max((_mtime(p) for p in files), default=0)
            if newest < cutoff:
                self.forget(upload_id)
                for path in files:
                    path.unlink(missing_ok=True)
        for path in staging.glob("*.part"):
            if not (root / f"{path.stem}.json").exists() and _mtime(path) < cutoff:
                path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0


SESSIONS_KEY: web.AppKey[UploadSessions] = web.AppKey("drive_upload_sessions")


def sessions_of(request: web.Request) -> UploadSessions:
    return request.app[SESSIONS_KEY]


def _folder(request: web.Request) -> Path:
    """Where sessions and their journals are (and staging files, when the blob store
    has no staging folder)."""
    root = plugin_of(request).bridge.info.data_dir / "drive-uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _staging(request: web.Request, root: Path) -> Path:
    return staging_folder(plugin_of(request).drive.blobs) or root


def _load(request: web.Request, user: str) -> Upload:
    upload_id = request.match_info["upload"]
    gone = NotFound(f"no upload {upload_id} (it ended, or was given up)")
    if not upload_id or set(upload_id) - _ID_CHARS:
        raise gone
    root = _folder(request)
    try:
        meta = json.loads((root / f"{upload_id}.json").read_text())
    except (OSError, ValueError):
        raise gone from None
    if meta.get("user") != user or not isinstance(meta.get("staged"), str):
        raise gone  # (a session of an older version, without "staged", cannot go on)
    return sessions_of(request).get(root, meta)


@authenticated
async def start(request: web.Request, user: str) -> web.Response:
    plugin = plugin_of(request)
    folder = await folder_of(request)
    body = await json_body(request)
    parts = split_path(required(body, "path"))
    size = required(body, "size", int)
    if isinstance(size, bool) or size < 0:
        raise DriveError("'size' must be the file's size in bytes")
    await plugin.drive.access.require(folder, user, write=True)
    parent = await plugin.drive.tree.lookup(folder, parts[:-1])
    if not parent.is_dir:
        raise DriveError(f"{parent.name} is a file, not a folder")
    quota = await plugin.drive.quota(folder.owner)
    if size > quota.free:
        raise QuotaExceeded(
            f"this file ({size} bytes) does not fit in the folder owner's free quota "
            f"({quota.free} bytes): delete something and empty the trash, or ask the owner"
        )
    root = _folder(request)
    sessions = sessions_of(request)
    staging = _staging(request, root)
    sessions.remove_stale(root, staging)
    upload_id = secrets.token_urlsafe(18)
    meta = {
        "id": upload_id,
        "user": user,
        "folder": folder.id,
        "path": "/".join(parts),
        "size": size,
        "mime": body.get("mime") if isinstance(body.get("mime"), str) else None,
        "created": time.time(),
        "staged": str(staging / f"{upload_id}.part"),
    }
    meta_path = root / f"{meta['id']}.json"
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    return web.json_response(sessions.get(root, meta).describe(), status=201)


@authenticated
async def status(request: web.Request, user: str) -> web.Response:
    upload = _load(request, user)
    await upload.settled()  # pieces being received end first (or are cut off)
    return web.json_response(upload.describe())


@authenticated
async def give_up(request: web.Request, user: str) -> web.Response:
    upload = _load(request, user)
    sessions_of(request).forget(upload.id)
    upload.remove()
    return web.json_response({"id": upload.id, "given_up": True})


@authenticated
async def append(request: web.Request, user: str) -> web.Response:
    """Keep a piece. Whatever arrived before a cut-off is kept (flushed to stable
    storage), so the client sends only what is missing."""
    upload = _load(request, user)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise DriveError("send Upload-Offset: the byte the piece starts at") from None
    if request.content_length is None:
        raise DriveError("send the piece with a Content-Length")
    drive = plugin_of(request).drive
    folder = await drive.access.folder(upload.meta["folder"])
    number = upload.begin_piece(offset, request.content_length)
    try:
        storing = upload.start_storing(drive, user, folder)
        written, pending, durable, handle = offset, bytearray(), offset, None
        try:
            handle = await asyncio.to_thread(os.open, upload.path, os.O_WRONLY | os.O_CREAT, 0o600)
            async for chunk in request.content.iter_chunked(WRITE_BUFFER):
                pending += chunk
                if len(pending) >= WRITE_BUFFER:
                    await upload.hash.write(handle, pending, written)
                    written += len(pending)
                    pending = bytearray()
                    await upload.wrote(number, written)
                    if storing.done():
                        storing.result()  # its error (quota, storage)
        finally:
            # What arrived before a cut-off is kept too; all of it durable before the
            # piece is journaled and acknowledged (nothing is, if that fails).
            try:
                if handle is not None:
                    await asyncio.to_thread(_write_sync_close, handle, bytes(pending), written)
                    durable = written + len(pending)
            finally:
                await upload.end_piece(number, durable)
        if not upload.complete():
            return web.json_response(upload.describe())
        node = await storing
    except DriveError:
        # Refused (quota, the copyright rule, a viewer now): nothing more can come of
        # these bytes, so they go; the answer says why.
        sessions_of(request).forget(upload.id)
        upload.remove()
        raise
    sessions_of(request).forget(upload.id)
    upload.remove()
    path = upload.meta["path"]
    return web.json_response(
        {**upload.describe(), "offset": upload.size, "kept": [[0, upload.size]], "done": True}
        | {"node": node.as_json(path)},
        headers={"ETag": etag(node)},
    )


def _write_sync_close(handle: int, rest: bytes, position: int) -> None:
    try:
        _write_at(handle, rest, position)
        os.fdatasync(handle)
    finally:
        os.close(handle)


def add_routes(app: web.Application, prefix: str, folder: str) -> None:
    app[SESSIONS_KEY] = UploadSessions()
    app.router.add_post(f"{folder}/uploads", start)
    upload = f"{prefix}/uploads/{{upload}}"
    app.router.add_get(upload, status)
    app.router.add_patch(upload, append)
    app.router.add_delete(upload, give_up)
