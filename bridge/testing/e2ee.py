"""A person with an end-to-end encrypting Matrix client (matrix-nio with its ``e2e``
extra, on vodozemac), for tests in encrypted rooms: what they see is what their client
could decrypt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomCreateResponse,
    RoomKeyRequest,
    RoomSendResponse,
    ShareGroupSessionResponse,
    SyncResponse,
)

from .stack import Stack


class EncryptedPerson:
    """A logged-in matrix-nio client with encryption on, its keys in ``store``."""

    def __init__(self, homeserver: str, user_id: str, token: str, device_id: str, store: Path):
        store.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.client = AsyncClient(
            homeserver,
            user_id,
            device_id=device_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, request_timeout=30),
        )
        self.client.restore_login(user_id, device_id, token)
        # room -> events as the client shows them: decrypted, or MegolmEvent sources
        # (type m.room.encrypted) for what it could not decrypt
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.undecryptable: dict[str, list[str]] = {}
        self.invites: set[str] = set()
        self.to_device: list[dict[str, Any]] = []  # to-device events received, as sent
        # answer other people's key requests as Element does (see answer_key_requests)
        self.answers_key_requests = False
        self.keys_forwarded: list[tuple[str, str, str]] = []  # (user, device, session id)

    @classmethod
    async def register(cls, stack: Stack, localpart: str, store: Path) -> EncryptedPerson:
        info = await asyncio.to_thread(stack.synapse.register_user, localpart, "correct horse")
        person = cls(
            stack.synapse.url, info["user_id"], info["access_token"], info["device_id"], store
        )
        await person.sync_once()
        return person

    @classmethod
    async def another_device(cls, stack: Stack, user_id: str, store: Path) -> EncryptedPerson:
        """The same person logging in on another device (password ``correct horse``,
        as :meth:`register` makes them)."""
        from nio import LoginResponse

        client = AsyncClient(stack.synapse.url, user_id)
        try:
            response = await client.login("correct horse", device_name="second")
        finally:
            await client.close()
        if not isinstance(response, LoginResponse):
            raise RuntimeError(f"login failed: {response}")
        person = cls(stack.synapse.url, user_id, response.access_token, response.device_id, store)
        await person.sync_once()
        return person

    async def close(self) -> None:
        await self.client.close()

    async def sync_once(self, timeout_ms: int = 300) -> None:
        client = self.client
        initial = client.next_batch is None
        response = await client.sync(
            timeout=timeout_ms,
            full_state=initial,
            sync_filter={"room": {"timeline": {"limit": 500}}},  # no gaps in what we see
        )
        for room_id, room in response.rooms.join.items():
            if room.timeline.limited and not initial and room_id in self.timeline:
                raise RuntimeError(f"{self.user_id}: a gap in {room_id}'s timeline")
        if not isinstance(response, SyncResponse):
            raise RuntimeError(f"sync failed for {self.user_id}: {response}")
        for room_id, room in response.rooms.join.items():
            self.invites.discard(room_id)
            for event in room.timeline.events:
                source = dict(event.source)
                if isinstance(event, MegolmEvent):
                    self.undecryptable.setdefault(room_id, []).append(event.event_id)
                elif getattr(event, "decrypted", False):
                    # what the client shows (decrypted), and which Megolm session it used
                    source["decrypted"] = True
                    source["session_id"] = getattr(event, "session_id", None)
                self.timeline.setdefault(room_id, []).append(source)
        for room_id in response.rooms.invite:
            self.invites.add(room_id)
        self.to_device += [event.source for event in response.to_device_events]
        if self.answers_key_requests:
            self.answer_key_requests(response.to_device_events)
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    def answer_key_requests(self, events: list[Any]) -> None:
        """Forward a room key another person's device asks for, as Element's crypto
        (matrix-rust-sdk) does and matrix-nio does not (it answers its own devices only):
        only a session of this client's, and only to a device it was shared with when it
        was made (that device should have it; its to-device copy was lost). The forwarded
        key goes out with this sync's to-device messages."""
        olm = self.client.olm
        for event in events:
            if not isinstance(event, RoomKeyRequest) or event.sender == self.user_id:
                continue
            outbound = olm.outbound_group_sessions.get(event.room_id)
            wanted = (event.sender, event.requesting_device_id)
            if outbound is None or outbound.id != event.session_id:
                continue
            if wanted not in outbound.users_shared_with:
                continue
            own_key = olm.account.identity_keys["curve25519"]
            group_session = olm.inbound_group_store.get(event.room_id, own_key, event.session_id)
            device = olm.device_store[event.sender].get(event.requesting_device_id)
            session = olm.session_store.get(device.curve25519) if device else None
            if group_session is None or session is None:
                continue
            olm.outgoing_to_device_messages.append(
                olm._encrypt_forwarding_key(event.room_id, group_session, session, device)  # noqa: SLF001
            )
            self.keys_forwarded.append((*wanted, event.session_id))

    def rotate_room_key(self, room_id: str) -> None:
        """The next message into ``room_id`` starts a new Megolm session (and shares its
        key with the members' devices first)."""
        self.client.olm.outbound_group_sessions.pop(room_id, None)

    def mark(self, room_id: str) -> int:
        return len(self.timeline.get(room_id, []))

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        *,
        start: int = 0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.timeline.get(room_id, [])[start:]:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                seen = [(e.get("sender"), e.get("type")) for e in self.timeline.get(room_id, [])]
                raise TimeoutError(f"{self.user_id}: nothing matching in {room_id}: {seen[-10:]}")
            await self.sync_once()

    async def wait_for_to_device(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.to_device:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                types = [e.get("type") for e in self.to_device]
                raise TimeoutError(f"{self.user_id}: no matching to-device event: {types}")
            await self.sync_once()

    async def wait_for_text(
        self, room_id: str, sender: str, contains: str, *, start: int = 0
    ) -> dict[str, Any]:
        return await self.wait_for(
            room_id,
            lambda e: (
                e.get("sender") == sender
                and e.get("type") == "m.room.message"
                and contains in str(e.get("content", {}).get("body", ""))
            ),
            start=start,
        )

    async def wait_joined(self, room_id: str, user_id: str) -> None:
        await self.wait_for(
            room_id,
            lambda e: (
                e.get("type") == "m.room.member"
                and e.get("state_key") == user_id
                and e.get("content", {}).get("membership") == "join"
            ),
        )

    async def create_encrypted_room(
        self, invite: list[str], *, direct: bool = False, name: str | None = None
    ) -> str:
        """Created as Element X creates a direct chat (``trusted_private_chat``, encryption
        in ``initial_state``), or as Element creates a private room."""
        from nio import RoomPreset

        response = await self.client.room_create(
            name=name,
            invite=invite,
            is_direct=direct,
            preset=RoomPreset.trusted_private_chat if direct else RoomPreset.private_chat,
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"room creation failed: {response}")
        await self.wait_joined(response.room_id, self.user_id)  # the client knows the room
        return response.room_id

    async def send_text(self, room_id: str, body: str) -> str:
        """Encrypted to every device of the room's members (unverified ones included)."""
        response = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return response.event_id

    async def send_text_holding_key(
        self, room_id: str, body: str
    ) -> tuple[str, Callable[[], Awaitable[None]]]:
        """Send an encrypted message but hold back the room key's to-device messages;
        returns the event id and a function that sends them (a key arriving late)."""
        held: list[tuple[Any, ...]] = []
        real = self.client._send  # noqa: SLF001

        async def capture(response_class, method, path, data=None, response_data=None, **kw):
            if "/sendToDevice/" in path:
                held.append((response_class, method, path, data, response_data, kw))
                response = ShareGroupSessionResponse(*response_data)
                await self.client.receive_response(response)  # as if sent: it thinks so
                return response
            return await real(response_class, method, path, data, response_data, **kw)

        self.client._send = capture  # noqa: SLF001
        try:
            event_id = await self.send_text(room_id, body)
        finally:
            self.client._send = real  # noqa: SLF001
        assert held, "no room key was held back (was the session already shared?)"

        async def release() -> None:
            for response_class, method, path, data, response_data, kw in held:
                await real(response_class, method, path, data, response_data, **kw)

        return event_id, release

    async def send_raw(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """An event sent as it is (no encryption by the client): for hostile input."""
        from uuid import uuid4

        from nio import Api

        method, path, data = Api.room_send(
            self.client.access_token, room_id, event_type, content, uuid4()
        )
        response = await self.client._send(RoomSendResponse, method, path, data, (room_id,))  # noqa: SLF001
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return response.event_id
