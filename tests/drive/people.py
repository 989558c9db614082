"""A person using the drive from a Matrix client (matrix-nio), with the few steps the
drive tests repeat: talk to the bot, create a folder, send and fetch files."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import aiohttp
from nio import UploadResponse

from anywhere.bridge.testing.stack import MatrixUser, Stack

PREFIX = "/_anywhere/drive/v1"


class DrivePerson:
    def __init__(self, user: MatrixUser, stack: Stack) -> None:
        self.user = user
        self.stack = stack
        self.bot = stack.bot_id
        self.dm_room: str | None = None

    @property
    def id(self) -> str:
        return self.user.user_id

    @property
    def token(self) -> str:
        return self.user.client.access_token

    async def close(self) -> None:
        await self.user.close()

    async def dm(self) -> str:
        if self.dm_room is None:
            self.dm_room = await self.user.dm(self.bot)
        return self.dm_room

    async def ask(self, room: str | None, text: str, expect: str = "") -> str:
        """Send a command and return the bot's answer (replies to that message)."""
        room = room or await self.dm()
        event_id = await self.user.send_text(room, text)

        def is_answer(event: dict[str, Any]) -> bool:
            content = event.get("content", {})
            reply_to = content.get("m.relates_to", {}).get("m.in_reply_to", {})
            return event.get("sender") == self.bot and reply_to.get("event_id") == event_id

        answer = await self.user.wait_for(room, is_answer)
        body = answer["content"]["body"]
        assert expect in body, f"expected {expect!r} in the answer to {text!r}, got {body!r}"
        return body

    async def wait_invite(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.user.invites:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} got no invite")
            await self.user.sync_once()
        return self.user.invites.pop()

    async def join(self, room: str) -> None:
        await self.user.client.join(room)
        await self.user.wait_joined(room, self.id)

    async def new_folder(self, name: str) -> str:
        """Create a shared folder from the DM, accept its room; returns the room id."""
        await self.ask(None, f"!drive mkdir {name}", f"Created the folder {name}")
        room = await self.wait_invite()
        await self.join(room)
        return room

    async def send_file(
        self,
        room: str,
        name: str,
        data: bytes,
        mime: str = "application/octet-stream",
        msgtype: str = "m.file",
    ) -> str:
        response, _ = await self.user.client.upload(
            lambda *_: data, content_type=mime, filename=name, filesize=len(data)
        )
        assert isinstance(response, UploadResponse), response
        content = {
            "msgtype": msgtype,
            "body": name,
            "url": response.content_uri,
            "info": {"size": len(data), "mimetype": mime},
        }
        sent = await self.user.client.room_send(room, "m.room.message", content)
        return sent.event_id

    async def saved(self, room: str, event_id: str) -> str:
        """The bot's answer to a file sent into a folder room."""

        def is_answer(event: dict[str, Any]) -> bool:
            reply_to = event.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {})
            return event.get("sender") == self.bot and reply_to.get("event_id") == event_id

        return (await self.user.wait_for(room, is_answer))["content"]["body"]

    async def download(self, mxc: str) -> bytes:
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        url = f"{self.stack.synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {self.token}"}) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return await resp.read()

    async def wait_file(self, room: str, name: str, start: int = 0) -> dict[str, Any]:
        return await self.user.wait_for(
            room,
            lambda e: (
                e.get("sender") == self.bot
                and e.get("content", {}).get("body") == name
                and "url" in e.get("content", {})
            ),
            start=start,
        )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Api:
    """A person's HTTP client for the drive."""

    def __init__(self, stack, person) -> None:
        self.base = stack.bridge.url + PREFIX
        self.headers = {"Authorization": f"Bearer {person.token}"}

    async def call(self, method: str, path: str, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, headers=headers, **kwargs) as resp,
        ):
            body = await resp.read()
            return resp.status, resp.headers, body

    async def json(self, method: str, path: str, **kwargs):
        status, headers, body = await self.call(method, path, **kwargs)
        return status, headers, json.loads(body) if body else None

    async def folder(self, name: str) -> str:
        status, _, body = await self.json("POST", "/folders", json={"name": name})
        assert status == 201, body
        return body["id"]
