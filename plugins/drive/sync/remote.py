"""The server side of a sync: the drive's HTTP API, with the person's Matrix token.

Plain ``http.client`` on one kept-alive connection, each call run in a worker thread:
a sync makes its calls one after another, and the standard library starts much faster
than an async HTTP stack, which matters for a command run every few seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import ssl
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from ..names import InvalidName, name_key, split_path
from .credentials import Credentials

PREFIX = "/_anywhere/drive/v1"
CHUNK = 1 << 20
Progress = Callable[[int], None]
_RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class RemoteError(Exception):
    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {errcode})")
        self.status = status
        self.errcode = errcode
        self.message = message


class Unreachable(Exception):
    """The drive cannot be reached; local changes wait for the next run."""


class _Reader:
    """A file body that reports progress as http.client reads it."""

    def __init__(self, handle: BinaryIO, progress: Progress | None) -> None:
        self.handle, self.progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if data and self.progress:
            self.progress(len(data))
        return data


class Remote:
    def __init__(self, credentials: Credentials) -> None:
        url = urlsplit(credentials.bridge_url)
        self.base = credentials.bridge_url + PREFIX
        self._path = url.path.rstrip("/") + PREFIX
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "localhost", url.port
        self.headers = {"Authorization": f"Bearer {credentials.access_token}"}
        self._conn: http.client.HTTPConnection | None = None

    async def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None:
            return self._conn, True
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._conn = kind(self._host, self._port, timeout=60, blocksize=CHUNK)
        return self._conn, False

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        sink: Callable[[http.client.HTTPResponse], Any] | None = None,
        reopen: Callable[[], Any] | None = None,
    ) -> Any:
        """One request; JSON back (or what ``sink`` makes of a 200 response)."""
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, self._path + path, body=body, headers=all_headers)
                resp = conn.getresponse()
                if resp.status == 200 and sink is not None:
                    return sink(resp)
                data = resp.read()
            except _RETRYABLE as exc:
                self._drop()
                if reused and attempt == 1:  # the kept-alive connection had been closed
                    body = reopen() if reopen else body
                    continue
                raise Unreachable(f"cannot reach the drive at {self.base}: {exc}") from exc
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise Unreachable(
                    f"cannot reach the drive at {self.base}: its certificate is not trusted "
                    f"({exc.verify_message}); nothing was sent. If your operator uses a "
                    "private certificate authority, point SSL_CERT_FILE at its certificate"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise Unreachable(f"cannot reach the drive at {self.base}: {exc}") from exc
            return _answer(resp, data, self.base)
        raise Unreachable(f"cannot reach the drive at {self.base}")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._exchange, method, path, **kwargs)

    async def folder_id(self, ref: str) -> str:
        folders = (await self._call("GET", "/folders"))["folders"]
        for folder in folders:
            if folder["id"] == ref:
                return folder["id"]
        named = [f for f in folders if f["name"].casefold() == ref.casefold()]
        joined = [f for f in named if f["state"] == "joined"]
        if len(joined) == 1:
            return joined[0]["id"]
        if named and not joined:
            raise RemoteError(403, "M_FORBIDDEN", f"accept the invitation to {ref!r} first")
        if not named:
            raise RemoteError(404, "M_NOT_FOUND", f"you have no folder named {ref!r}")
        ids = ", ".join(f"{f['id']} (owner {f['owner']})" for f in joined)
        raise RemoteError(400, "M_BAD_REQUEST", f"several folders are named {ref!r}: {ids}")

    async def tree(self, folder: str) -> Tree:
        """The folder's tree as the server tells it, every path checked (see :class:`Tree`)."""
        listing = await self._call("GET", f"/folders/{folder}/tree")
        if not isinstance(listing, dict) or not isinstance(listing.get("nodes"), list):
            raise _malformed("/tree", "no list of nodes")
        cursor = listing.get("cursor")
        if not isinstance(cursor, int) or isinstance(cursor, bool):
            raise _malformed("/tree", "no cursor number")
        return Tree.from_nodes(listing["nodes"], cursor)

    async def changes(self, folder: str, since: int) -> dict[str, Any]:
        feed = await self._call("GET", f"/folders/{folder}/changes?{urlencode({'since': since})}")
        if not isinstance(feed, dict) or not isinstance(feed.get("changes"), list):
            raise _malformed("/changes", "no list of changes")
        return feed

    async def mkdir(self, folder: str, path: str) -> dict[str, Any]:
        return await self._post(f"/folders/{folder}/mkdir", {"path": path})

    async def delete(self, folder: str, path: str, revision: int) -> dict[str, Any]:
        return await self._call(
            "DELETE", f"/folders/{folder}/files/{quote(path)}", headers=_if_match(revision)
        )

    async def move(self, folder: str, source: str, dest: str, revision: int) -> dict[str, Any]:
        return await self._post(
            f"/folders/{folder}/move", {"from": source, "to": dest}, _if_match(revision)
        )

    async def _post(self, path: str, payload: dict, headers: dict | None = None) -> Any:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        return await self._call("POST", path, body=body, headers=headers)

    async def upload(
        self,
        folder: str,
        path: str,
        open_source: Callable[[], BinaryIO],
        size: int,
        revision: int | None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """PUT the file (``open_source()`` opens it, again for a retry), streamed;
        ``revision`` None means "create, do not overwrite"."""
        headers = _if_match(revision) if revision is not None else {"If-None-Match": "*"}
        headers["Content-Length"] = str(size)
        headers["Content-Type"] = "application/octet-stream"
        handles: list[BinaryIO] = []

        def reopen() -> _Reader:
            handles.append(open_source())
            return _Reader(handles[-1], progress)

        try:
            return await self._call(
                "PUT",
                f"/folders/{folder}/files/{quote(path)}",
                body=reopen(),
                headers=headers,
                reopen=reopen,
            )
        finally:
            for handle in handles:
                handle.close()

    async def download(
        self, folder: str, path: str, dest: BinaryIO, sha256: str, progress: Progress | None = None
    ) -> None:
        """Fetch into the open file ``dest`` and check the content is the ``sha256`` the
        tree named."""

        def save(resp: http.client.HTTPResponse) -> str:
            digest = hashlib.sha256()
            dest.seek(0)
            dest.truncate()
            while chunk := resp.read(CHUNK):
                dest.write(chunk)
                digest.update(chunk)
                if progress:
                    progress(len(chunk))
            dest.flush()
            return digest.hexdigest()

        got = await self._call("GET", f"/folders/{folder}/files/{quote(path)}", sink=save)
        if got != sha256:
            raise RemoteError(409, "DRIVE_CHANGED", f"{path} changed while it was downloaded")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Tree:
    """A folder's tree from the server, trusted no further than checked: every path is
    checked as the server checks names (:func:`~anywhere.plugins.drive.names.split_path`: no
    ``..``, nothing absolute, no reserved or unholdable name) and every node's fields
    have their types. What fails is left out and said in ``refused``, so a compromised
    server or anyone in the middle cannot steer a write, and nothing crashes on it."""

    def __init__(self, nodes: dict[str, dict[str, Any]], cursor: int, refused: list[str]):
        self.nodes, self.cursor, self.refused = nodes, cursor, refused

    @classmethod
    def from_nodes(cls, nodes: list[Any], cursor: int) -> Tree:
        checked: dict[str, dict[str, Any]] = {}
        keys: dict[str, str] = {}  # name_key -> path: the drive never holds two of one key
        refused: list[str] = []
        for node in nodes:
            shown = repr(node.get("path")) if isinstance(node, dict) else repr(node)[:80]
            try:
                path = check_node(node)
            except InvalidName as exc:
                refused.append(f"{shown} from the drive: {exc}; nothing was written for it")
                continue
            key = name_key(path)
            if key in keys:
                refused.append(
                    f"{shown} from the drive: it is listed already (as {keys[key]!r}; names "
                    "differing only by case or accents are one name on the drive)"
                )
                continue
            keys[key] = path
            checked[path] = {**node, "path": path}
        return cls(checked, cursor, refused)


def check_node(node: Any) -> str:
    """The node's path (in NFC) when the node is one the sync can act on; else
    :class:`InvalidName` saying what is wrong with it."""
    if not isinstance(node, dict):
        raise InvalidName("a node must be an object")
    path = "/".join(split_path(node.get("path")))
    kind = node.get("kind")
    if kind not in ("file", "dir"):
        raise InvalidName(f"its kind {kind!r} is neither 'file' nor 'dir'")
    if not isinstance(node.get("id"), str) or not node["id"]:
        raise InvalidName("it has no id")
    if not _is_int(node.get("revision")):
        raise InvalidName("its revision is not a number")
    if kind == "file":
        if not isinstance(node.get("sha256"), str) or not _SHA256.match(node["sha256"]):
            raise InvalidName("its sha256 is not a SHA-256 in hex")
        if not _is_int(node.get("size")) or node["size"] < 0:
            raise InvalidName("its size is not a number of bytes")
    return path


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(what: str, detail: str) -> RemoteError:
    return RemoteError(
        502,
        "M_BAD_RESPONSE",
        f"the drive's {what} answer is malformed ({detail}); nothing was changed — check "
        "that --bridge in `anywhere drive login` is this bridge",
    )


def _answer(resp: http.client.HTTPResponse, data: bytes, base: str) -> Any:
    """The JSON of a response; errors as :class:`RemoteError`, and a server that is
    down or starting (5xx, or not answering JSON) as :class:`Unreachable`."""
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
        if resp.status < 400:
            raise Unreachable(f"the drive at {base} gave an answer that is not JSON") from None
    if resp.status >= 500:
        detail = parsed.get("error") if isinstance(parsed, dict) else resp.reason
        raise Unreachable(f"the drive at {base} is not available (HTTP {resp.status}: {detail})")
    if resp.status >= 400:
        parsed = parsed if isinstance(parsed, dict) else {}
        raise RemoteError(resp.status, parsed.get("errcode", "?"), parsed.get("error", resp.reason))
    return parsed


def _if_match(revision: int) -> dict[str, str]:
    return {"If-Match": f'"{revision}"'}
