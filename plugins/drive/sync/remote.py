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
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

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

    async def tree(self, folder: str) -> dict[str, Any]:
        return await self._call("GET", f"/folders/{folder}/tree")

    async def changes(self, folder: str, since: int) -> dict[str, Any]:
        return await self._call("GET", f"/folders/{folder}/changes?{urlencode({'since': since})}")

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
        source: Path,
        revision: int | None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """PUT the file, streamed; ``revision`` None means "create, do not overwrite"."""
        headers = _if_match(revision) if revision is not None else {"If-None-Match": "*"}
        headers["Content-Length"] = str(os.path.getsize(source))
        headers["Content-Type"] = "application/octet-stream"
        handles: list[BinaryIO] = []

        def reopen() -> _Reader:
            handles.append(open(source, "rb"))  # noqa: SIM115 - closed below
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
        self, folder: str, path: str, dest: Path, sha256: str, progress: Progress | None = None
    ) -> None:
        """Fetch into ``dest`` and check the content is the ``sha256`` the tree named."""

        def save(resp: http.client.HTTPResponse) -> str:
            digest = hashlib.sha256()
            with open(dest, "wb") as handle:
                while chunk := resp.read(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    if progress:
                        progress(len(chunk))
            return digest.hexdigest()

        got = await self._call("GET", f"/folders/{folder}/files/{quote(path)}", sink=save)
        if got != sha256:
            raise RemoteError(409, "DRIVE_CHANGED", f"{path} changed while it was downloaded")


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
