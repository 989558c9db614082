"""A real test stack: Synapse, the bridge as a process, and matrix-nio people.

Used by the pytest fixtures (``anywhere.bridge.testing.fixtures``), the benchmarks and
``anywhere dev``; nothing here is a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
)

from anywhere.bridge.devstack import write_bridge_files

from .synapse import Synapse, free_port


class BridgeProcess:
    """``python -m anywhere run`` as a child process, with its log in ``log_path``.

    ``module`` and ``cwd`` run another tree's bridge instead (bench/bench_dispatch_compare.py
    runs an older checkout's ``python -m bridge`` from its own folder)."""

    def __init__(
        self,
        config_path: Path,
        env: dict[str, str] | None = None,
        *,
        module: str = "anywhere",
        cwd: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = yaml.safe_load(config_path.read_text("utf-8"))
        self.log_path = config_path.parent / "bridge.log"
        self.env = env or {}
        self.module, self.cwd = module, cwd
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config['appservice']['hostname']}:{self.config['appservice']['port']}"

    @property
    def ops_token(self) -> str:
        return self.config["operations"]["token"]

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("ANYWHERE__")} | self.env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.proc.returncode}:\n{self.tail()}")
            if self.health().get("ready"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the bridge was not ready within {timeout} s:\n{self.tail()}")

    def health(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/health", headers={"Authorization": f"Bearer {self.ops_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            return json.load(exc)
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    async def wait_for_line(self, *parts: str, after: int = 0, timeout: float = 60.0) -> str:
        """The first line of the bridge's log (from byte ``after``) holding all of
        ``parts``, once it is there."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                log = self.log_path.read_bytes()[after:].decode("utf-8", "replace")
                for line in log.splitlines():
                    if all(part in line for part in parts):
                        return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"no line with {parts} in the bridge's log:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""


SYNC_FILTER = {"room": {"timeline": {"limit": 200}}}


class MatrixUser:
    """A person in a Matrix client: a logged-in matrix-nio client that remembers what it
    has seen, so tests can wait for what a person would see."""

    def __init__(self, homeserver: str, user_id: str, access_token: str, device_id: str):
        self.user_id = user_id
        self.client = AsyncClient(
            homeserver,
            user_id,
            device_id=device_id,
            config=AsyncClientConfig(request_timeout=30, max_timeouts=3),
        )
        self.client.access_token = access_token
        self.client.user_id = user_id
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.invites: set[str] = set()
        self._since: str | None = None
        self._since_before: str | None = None

    async def close(self) -> None:
        await self.client.close()

    async def sync_once(self, timeout_ms: int = 500) -> None:
        try:
            response = await asyncio.wait_for(
                self.client.sync(
                    timeout=timeout_ms,
                    since=self._since,
                    full_state=self._since is None,
                    sync_filter=SYNC_FILTER,
                ),
                timeout_ms / 1000 + 30,
            )
        except TimeoutError:
            return  # a stalled request: the next call asks again from the same point
        if not isinstance(response, SyncResponse):
            raise RuntimeError(f"sync failed for {self.user_id}: {response}")
        self._since_before, self._since = self._since, response.next_batch
        for room_id, room in response.rooms.join.items():
            self.invites.discard(room_id)
            if room.timeline.limited and self._since_before is not None:
                await self._backfill(room_id, room.timeline.prev_batch)
            for event in room.timeline.events:
                self.timeline.setdefault(room_id, []).append(event.source)
        for room_id in response.rooms.invite:
            self.invites.add(room_id)
        for room_id, room in response.rooms.leave.items():  # e.g. the person was kicked
            self.invites.discard(room_id)
            for event in room.timeline.events:
                self.timeline.setdefault(room_id, []).append(event.source)

    async def _backfill(self, room_id: str, prev_batch: str) -> None:
        """A gap in the timeline (more events than the sync returned): page back until
        the events already seen, so no event a person would see is missing."""
        known = {e.get("event_id") for e in self.timeline.get(room_id, [])}
        missing: list[dict[str, Any]] = []
        token = prev_batch
        while token:
            page = await self.client.room_messages(room_id, start=token, limit=500)
            if not isinstance(page, RoomMessagesResponse) or not page.chunk:
                break
            for event in page.chunk:
                if event.source.get("event_id") in known:
                    token = None
                    break
                missing.append(event.source)
            else:
                token = page.end
        self.timeline.setdefault(room_id, []).extend(reversed(missing))

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,
        *,
        start: int = 0,
    ) -> dict[str, Any]:
        """The first event in ``room_id`` (from index ``start``) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.timeline.get(room_id, [])[start:]:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                seen = [
                    (e.get("sender"), e.get("content", {}).get("body"))
                    for e in self.timeline.get(room_id, [])[-10:]
                ]
                raise TimeoutError(
                    f"{self.user_id} saw nothing matching in {room_id} within "
                    f"{timeout} s; last events: {seen}"
                )
            await self.sync_once()

    async def wait_for_notice(
        self,
        room_id: str,
        sender: str,
        contains: str = "",
        timeout: float = 30.0,
        *,
        start: int = 0,
    ) -> dict[str, Any]:
        def match(event: dict[str, Any]) -> bool:
            body = event.get("content", {}).get("body", "")
            return (
                event.get("sender") == sender
                and event.get("type") == "m.room.message"
                and isinstance(body, str)
                and contains in body
            )

        return await self.wait_for(room_id, match, timeout, start=start)

    def mark(self, room_id: str) -> int:
        """Index to wait from, so later waits only see events after this point."""
        return len(self.timeline.get(room_id, []))

    async def send_text(self, room_id: str, body: str) -> str:
        response = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return response.event_id

    async def create_room(
        self,
        invite: list[str] = (),
        *,
        direct: bool = False,
        encrypted: bool = False,
        name: str | None = None,
    ) -> str:
        initial_state = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = await self.client.room_create(
            name=name, invite=list(invite), is_direct=direct, initial_state=initial_state
        )
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"room creation failed: {response}")
        return response.room_id

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 30.0) -> None:
        await self.wait_for(
            room_id,
            lambda e: (
                e.get("type") == "m.room.member"
                and e.get("state_key") == user_id
                and e.get("content", {}).get("membership") == "join"
            ),
            timeout,
        )

    async def dm(self, other: str, timeout: float = 30.0) -> str:
        """Open a direct chat with ``other`` (the bot) and wait until it has joined."""
        room_id = await self.create_room([other], direct=True)
        await self.wait_joined(room_id, other, timeout)
        return room_id


class Stack:
    """Synapse plus one bridge, sharing a work folder."""

    def __init__(
        self,
        workdir: Path,
        enabled: list[str],
        settings: dict | None = None,
        bridge_extra: dict | None = None,
        synapse_extra: dict | None = None,
    ) -> None:
        self.workdir = workdir
        self.server_name = "localhost"
        synapse_port = free_port()
        self.config_path, self.registration_path = write_bridge_files(
            workdir / "bridge",
            synapse_url=f"http://127.0.0.1:{synapse_port}",
            server_name=self.server_name,
            enabled=enabled,
            settings=settings,
            extra=bridge_extra,
        )
        self.synapse = Synapse(
            workdir / "synapse",
            server_name=self.server_name,
            port=synapse_port,
            app_service_config_files=[self.registration_path],
            extra_config=synapse_extra,
        )
        self.bridge = BridgeProcess(self.config_path)
        config = yaml.safe_load(self.config_path.read_text("utf-8"))
        self.bot_id = f"@{config['appservice']['bot']['localpart']}:{self.server_name}"
        self.config = config
        self._users = 0

    def start(self) -> None:
        self.synapse.start()
        self.bridge.start()

    def stop(self) -> None:
        self.bridge.stop()
        self.synapse.stop()

    async def homeserver_marks_bridge(self, state: str, timeout: float = 120.0) -> None:
        """Wait until Synapse's own record of the bridge is ``state`` ("up" or "down"), read
        from its database as Synapse writes it.

        A test that restarts the bridge under load waits for "up" before sending more:
        Synapse's recoverer strands an event created between finding its queue empty and
        marking the bridge up again (it sits in a transaction nobody sends until the next
        failure) — a homeserver race the bridge cannot see
        (tests/test_inbox_e2e_recoverer_race.py)."""
        deadline = time.monotonic() + timeout
        uri = f"file:{self.synapse.database_path}?mode=ro"
        while True:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                rows = db.execute("SELECT state FROM application_services_state").fetchall()
            # No row, or a row without a state: Synapse never marked the bridge down, which
            # it takes as up.
            states = [row[0] or "up" for row in rows] or ["up"]
            if state in states:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Synapse never marked the bridge {state}: {rows}")
            await asyncio.sleep(0.05)

    def __enter__(self) -> Stack:
        """``with Stack(...) as stack:`` starts both and always stops both."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def people(self) -> AsyncIterator[Callable[..., Awaitable[MatrixUser]]]:
        """``async with stack.people() as person: alice = await person()`` — people made
        through it are logged out of their clients at the end."""
        made: list[MatrixUser] = []

        async def make(localpart: str | None = None, *, admin: bool = False) -> MatrixUser:
            user = await self.user(localpart, admin=admin)
            made.append(user)
            return user

        try:
            yield make
        finally:
            for user in made:
                await user.close()

    async def user(self, localpart: str | None = None, *, admin: bool = False) -> MatrixUser:
        self._users += 1
        localpart = localpart or f"person{self._users}_{int(time.time() * 1000) % 100000}"
        info = await asyncio.to_thread(
            self.synapse.register_user, localpart, "correct horse", admin=admin
        )
        user = MatrixUser(
            self.synapse.url,
            info["user_id"],
            info["access_token"],
            info.get("device_id") or "TESTDEVICE",
        )
        await user.sync_once(0)
        return user
