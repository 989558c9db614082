"""The client-server calls the bot's device makes, as that device: the appservice's
``as_token`` with ``user_id`` and ``device_id`` (MSC4190 devices; Synapse's appservice
masquerading)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from ..errors import AnywhereError


class HomeserverRefused(AnywhereError):
    def __init__(self, what: str, status: int, body: Any) -> None:
        errcode = body.get("errcode") if isinstance(body, dict) else None
        error = body.get("error") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"the homeserver refused {what}: HTTP {status} {errcode}: {error}")
        self.status, self.errcode = status, errcode


class KeysAPI:
    def __init__(
        self,
        base_url: str,
        as_token: str,
        user_id: str,
        device_id: str,
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self.user_id = user_id
        self.device_id = device_id
        self._http = http

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        what: str,
        as_device: bool = True,
    ) -> Any:
        params = {"user_id": self.user_id}
        if as_device:
            params["device_id"] = self.device_id
        async with self._http().request(
            method,
            f"{self.base_url}/_matrix/client/v3{path}",
            params=params,
            json=body,
            headers=self._headers,
        ) as resp:
            answer = await resp.json(content_type=None)
            if resp.status not in (200, 201):  # 201: MSC4190 created the device
                raise HomeserverRefused(what, resp.status, answer)
            return answer

    async def create_device(self, display_name: str) -> None:
        """MSC4190: create (or keep) the device; idempotent."""
        await self.request(
            "PUT",
            f"/devices/{quote(self.device_id, safe='')}",
            {"display_name": display_name},
            what=(
                f"creating the device of {self.user_id} (is io.element.msc4190: true in the "
                "registration?)"
            ),
            as_device=False,
        )

    async def upload(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "/keys/upload", body, what="uploading keys")

    async def query(self, user_ids: list[str]) -> dict[str, Any]:
        body = {"device_keys": {u: [] for u in user_ids}}
        return await self.request("POST", "/keys/query", body, what="querying device keys")

    async def claim(self, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
        answer = await self.request(
            "POST", "/keys/claim", {"one_time_keys": wanted}, what="claiming one-time keys"
        )
        return answer.get("one_time_keys") or {}

    async def send_to_device(self, event_type: str, messages: dict[str, dict[str, Any]]) -> None:
        await self.request(
            "PUT",
            f"/sendToDevice/{quote(event_type, safe='')}/{secrets.token_hex(16)}",
            {"messages": messages},
            what="sending to-device messages",
        )

    async def joined_members(self, room_id: str) -> list[str]:
        answer = await self.request(
            "GET",
            f"/rooms/{quote(room_id, safe='')}/joined_members",
            what="listing a room's members",
            as_device=False,
        )
        return list((answer.get("joined") or {}).keys())

    async def encryption_state(self, room_id: str) -> dict[str, Any] | None:
        try:
            return await self.request(
                "GET",
                f"/rooms/{quote(room_id, safe='')}/state/m.room.encryption/",
                what="reading a room's encryption",
                as_device=False,
            )
        except HomeserverRefused as exc:
            if exc.status == 404:
                return None
            raise
