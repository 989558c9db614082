"""Encrypted rooms across a restart of the bridge, and hostile input: a restart keeps
the bot's device and every key (no new device, nothing unreadable); forged, replayed and
unknown-device messages give a log line, decrypt nothing wrongly and stop nothing."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
import vodozemac

from .conftest import log_size, wait_for_log
from .test_e2e_encrypted_rooms import is_text_from

pytestmark = pytest.mark.e2e


async def bot_devices(stack) -> list[str]:
    token = stack.config["appservice"]["as_token"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.synapse.url}/_matrix/client/v3/devices",
            params={"user_id": stack.bot_id},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return [d["device_id"] for d in (await resp.json())["devices"]]


async def bot_keys(stack, person, bot_id: str) -> dict:
    """The bot's device keys as the homeserver hands them to a person's client."""
    headers = {"Authorization": f"Bearer {person.client.access_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(
            f"{stack.synapse.url}/_matrix/client/v3/keys/query",
            json={"device_keys": {bot_id: []}},
        ) as resp,
    ):
        devices = (await resp.json())["device_keys"][bot_id]
    return {device_id: device["keys"] for device_id, device in devices.items()}


async def test_a_restart_keeps_the_bots_device_and_keys_and_nothing_becomes_unreadable(
    encrypted_person, bot_id, anywhere_stack
):
    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], direct=True)
    await alice.wait_joined(room, bot_id)
    mark = alice.mark(room)
    await alice.send_text(room, "!ping before")
    await alice.wait_for(room, is_text_from(bot_id, "pong before"), start=mark)
    devices, keys = await bot_devices(anywhere_stack), await bot_keys(anywhere_stack, alice, bot_id)
    assert len(devices) == 1

    logged = log_size(anywhere_stack)
    await asyncio.to_thread(anywhere_stack.bridge.stop)
    await asyncio.to_thread(anywhere_stack.bridge.start)
    await wait_for_log(anywhere_stack, "encryption account loaded", after=logged)
    await wait_for_log(anywhere_stack, "encrypted rooms ready", after=logged)

    # Alice's client goes on with the same room key; the bot answers with its own
    mark = alice.mark(room)
    await alice.send_text(room, "!ping after")
    answer = await alice.wait_for(room, is_text_from(bot_id, "pong after"), start=mark)
    assert answer["decrypted"] is True
    assert await bot_devices(anywhere_stack) == devices
    assert await bot_keys(anywhere_stack, alice, bot_id) == keys
    log = anywhere_stack.bridge.log_path.read_bytes()[logged:].decode()
    assert "waiting for the room key" not in log
    assert "not decrypted" not in log


async def raw_content(stack, person, room_id: str, event_id: str) -> dict:
    """An event's content as the homeserver holds it (still encrypted)."""
    headers = {"Authorization": f"Bearer {person.client.access_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{stack.synapse.url}/_matrix/client/v3/rooms/{room_id}/event/{event_id}") as resp,
    ):
        return (await resp.json())["content"]


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


async def test_forged_replayed_and_unknown_device_messages_are_logged_and_nothing_stops(
    encrypted_person, bot_id, anywhere_stack
):
    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], direct=True)
    await alice.wait_joined(room, bot_id)
    mark = alice.mark(room)
    first_id = await alice.send_text(room, "!ping first")
    await alice.wait_for(room, is_text_from(bot_id, "pong first"), start=mark)
    encrypted = await raw_content(anywhere_stack, alice, room, first_id)
    assert encrypted["algorithm"] == "m.megolm.v1.aes-sha2"
    logged = log_size(anywhere_stack)

    # replayed: the same Megolm message again, as a new event
    replayed = await alice.send_raw(room, "m.room.encrypted", dict(encrypted))
    line = await wait_for_log(anywhere_stack, "encrypted event not decrypted", after=logged)
    assert replayed in line and "replayed" in line

    # forged: Alice's session id, a ciphertext that does not verify
    logged = log_size(anywhere_stack)
    forged_text = bytearray(_unb64(encrypted["ciphertext"]))
    forged_text[10] ^= 0xFF
    forged = await alice.send_raw(
        room,
        "m.room.encrypted",
        dict(encrypted, ciphertext=base64.b64encode(bytes(forged_text)).decode().rstrip("=")),
    )
    line = await wait_for_log(anywhere_stack, "encrypted event not decrypted", after=logged)
    assert forged in line

    # a room key over Olm from a device the homeserver does not list for Alice
    logged = log_size(anywhere_stack)
    await _olm_from_unknown_device(anywhere_stack, alice, bot_id, room)
    line = await wait_for_log(anywhere_stack, "to-device message not decrypted", after=logged)
    assert "does not list" in line

    # the bridge goes on: a later command is answered
    mark = alice.mark(room)
    await alice.send_text(room, "!ping still here")
    answer = await alice.wait_for(room, is_text_from(bot_id, "pong still here"), start=mark)
    assert answer["decrypted"] is True


async def _olm_from_unknown_device(stack, alice, bot_id: str, room: str) -> None:
    """Alice's account, but an Olm identity no device of hers has: an m.room_key."""
    rogue = vodozemac.Account()
    headers = {"Authorization": f"Bearer {alice.client.access_token}"}
    base = f"{stack.synapse.url}/_matrix/client/v3"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/keys/query", json={"device_keys": {bot_id: []}}) as r:
            (device_id, device), *_ = (await r.json())["device_keys"][bot_id].items()
        curve, ed = (
            device["keys"][f"curve25519:{device_id}"],
            device["keys"][f"ed25519:{device_id}"],
        )
        claim = {"one_time_keys": {bot_id: {device_id: "signed_curve25519"}}}
        async with http.post(f"{base}/keys/claim", json=claim) as r:
            one_time = next(iter((await r.json())["one_time_keys"][bot_id][device_id].values()))
        session = rogue.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(curve),
            vodozemac.Curve25519PublicKey.from_base64(one_time["key"]),
        )
        group = vodozemac.GroupSession()
        payload = {
            "type": "m.room_key",
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": room,
                "session_id": group.session_id,
                "session_key": group.session_key.to_base64(),
            },
            "sender": alice.user_id,
            "sender_device": "ROGUE",
            "keys": {"ed25519": rogue.ed25519_key.to_base64()},
            "recipient": bot_id,
            "recipient_keys": {"ed25519": ed},
        }
        message_type, ciphertext = session.encrypt(json.dumps(payload).encode()).to_parts()
        content = {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": rogue.curve25519_key.to_base64(),
            "ciphertext": {
                curve: {
                    "type": message_type,
                    "body": base64.b64encode(ciphertext).decode().rstrip("="),
                }
            },
        }
        body = {"messages": {bot_id: {device_id: content}}}
        async with http.put(f"{base}/sendToDevice/m.room.encrypted/rogue1", json=body) as r:
            assert r.status == 200, await r.text()


async def test_sigkill_while_encrypted_commands_arrive_answers_each_once_and_all_readable(
    encrypted_person, bot_id, anywhere_stack
):
    """The bridge is SIGKILLed in the middle of a stream of encrypted commands and started
    again later: every command is answered exactly once, and every answer decrypts."""
    import re
    import time

    alice = await encrypted_person("alice")
    room = await alice.create_encrypted_room([bot_id], direct=True)
    await alice.wait_joined(room, bot_id)
    total, kill_at, start_at = 30, 12, 20

    def pongs() -> dict[int, int]:
        found: dict[int, int] = {}
        for event in alice.timeline.get(room, []):
            body = str(event.get("content", {}).get("body", ""))
            if event.get("sender") == bot_id and (match := re.search(r"pong k(\d+)\b", body)):
                found[int(match[1])] = found.get(int(match[1]), 0) + 1
        return found

    for n in range(1, total + 1):
        await alice.send_text(room, f"!ping k{n}")
        if n == kill_at:
            await asyncio.to_thread(anywhere_stack.bridge.kill)
        if n == start_at:
            await asyncio.to_thread(anywhere_stack.bridge.start)
            # see Stack.homeserver_marks_bridge: a homeserver race, not what this is about
            await anywhere_stack.homeserver_marks_bridge("up")
    deadline = time.monotonic() + 180
    while len(pongs()) < total and time.monotonic() < deadline:
        await alice.sync_once(1000)
    # a marker after everything: any duplicate would have arrived before its answer
    mark = alice.mark(room)
    await alice.send_text(room, "!ping marker")
    await alice.wait_for(room, is_text_from(bot_id, "pong marker"), start=mark, timeout=120)
    found = pongs()
    assert sorted(set(range(1, total + 1)) - set(found)) == [], "pings never answered"
    assert [n for n, count in found.items() if count > 1] == [], "pings answered twice"
    assert alice.undecryptable.get(room, []) == []
    plain = [
        e["content"].get("body")
        for e in alice.timeline[room]
        if e.get("sender") == bot_id
        and e.get("type") == "m.room.message"
        and not e.get("decrypted")
    ]
    assert plain == [], "the bot sent plain text into the encrypted room"
