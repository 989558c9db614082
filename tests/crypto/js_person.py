"""A person whose client is Element's own crypto: matrix-js-sdk with its Rust crypto
(``initRustCrypto``, WASM) in node, driven over JSON lines (tests/crypto/js/driver.mjs).
What they see is what Element's crypto could decrypt."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anywhere.bridge.testing.stack import Stack

HERE = Path(__file__).resolve().parent / "js"
MODULES = Path(
    os.environ.get("ANYWHERE_CRYPTO_JS_MODULES", Path.home() / ".cache/anywhere-crypto-js")
)


def missing() -> str | None:
    """Why the js-sdk person cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (Node 20 or newer: apt-get install nodejs)"
    if not (MODULES / "node_modules" / "matrix-js-sdk").is_dir():
        return (
            f"matrix-js-sdk is not installed in {MODULES}: mkdir -p {MODULES} && "
            f"cp {HERE / 'package.json'} {MODULES}/ && npm install --prefix {MODULES} "
            "(or run scripts/test.sh)"
        )
    return None


class JsPerson:
    """One node process, one logged-in matrix-js-sdk client with Rust crypto."""

    def __init__(self, process: asyncio.subprocess.Process, user_id: str) -> None:
        self.process = process
        self.user_id = user_id
        self.device_id = ""
        # room -> event_id -> the event as the client shows it now (latest attempt wins)
        self.rooms: dict[str, dict[str, dict[str, Any]]] = {}
        self._answers: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def register(cls, stack: Stack, localpart: str) -> JsPerson:
        info = await asyncio.to_thread(stack.synapse.register_user, localpart, "correct horse")
        process = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "driver.mjs"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "ANYWHERE_CRYPTO_JS_MODULES": str(MODULES)},
            limit=16 * 1024 * 1024,
        )
        person = cls(process, info["user_id"])
        started = await person.call(
            "start",
            base_url=stack.synapse.url,
            user_id=info["user_id"],
            access_token=info["access_token"],
            device_id=info["device_id"],
        )
        person.device_id = started["device_id"]
        return person

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a library's stray output
            if message.get("kind") == "event":
                room = self.rooms.setdefault(message["room_id"], {})
                room.pop(message["event_id"], None)  # keep arrival order of the latest
                room[message["event_id"]] = message
                self._changed.set()
            elif (answer := self._answers.pop(message.get("id"), None)) is not None:
                answer.set_result(message)
        for answer in self._answers.values():
            answer.set_exception(RuntimeError(f"{self.user_id}: the js-sdk driver exited"))

    async def call(self, cmd: str, timeout: float = 60.0, **args: Any) -> Any:
        self._next_id += 1
        request_id = self._next_id
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": request_id, "cmd": cmd, **args}).encode())
        self.process.stdin.write(b"\n")
        await self.process.stdin.drain()
        message = await asyncio.wait_for(answer, timeout)
        if not message["ok"]:
            raise RuntimeError(message["error"])
        return message["result"]

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                await self.call("stop", timeout=10)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()

    def events(self, room_id: str) -> list[dict[str, Any]]:
        return list(self.rooms.get(room_id, {}).values())

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events(room_id):
                if predicate(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(e["sender"], e["type"], e["utd"]) for e in self.events(room_id)]
                raise TimeoutError(f"{self.user_id}: nothing matching in {room_id}: {seen[-10:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def wait_joined(self, room_id: str, user_id: str) -> None:
        await self.wait_for(
            room_id,
            lambda e: (
                e["type"] == "m.room.member"
                and e["state_key"] == user_id
                and e["content"].get("membership") == "join"
            ),
        )
