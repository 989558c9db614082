"""Files from an encrypted group room to XMPP, end to end: a real Prosody, a real Synapse,
the bridge as a process, a Matrix person whose client encrypts (matrix-nio with
vodozemac) and encrypts its attachments with matrix-nio's own code."""

from __future__ import annotations

import secrets

import aiohttp
import pytest
import pytest_asyncio
from nio import UploadResponse
from nio.crypto.attachments import encrypt_attachment

from anywhere.bridge.testing.e2ee import EncryptedPerson

from .test_e2e_xmpp import PNG, ROOM_SEQ, child_of, relay_joined, wait_presence

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def encrypted_boss(xmpp_stack, tmp_path):
    localpart = f"boss_{secrets.token_hex(3)}"
    person = await EncryptedPerson.register(xmpp_stack, localpart, tmp_path / localpart)
    yield person
    await person.close()


async def encrypted_linked_group(stack, boss: EncryptedPerson, xmpp_person, nick, prosody):
    """A private encrypted room the boss made, the bot invited, linked to a fresh MUC."""
    room = f"secret{next(ROOM_SEQ)}@{prosody.muc}"
    await xmpp_person.join(room, nick)
    bot = stack.bot_id
    room_id = await boss.create_encrypted_room([bot], name="Decision tonight")
    await boss.wait_joined(room_id, bot)
    levels = await boss.client.room_get_state_event(room_id, "m.room.power_levels")
    content = dict(levels.content)
    content["users"] = {**content.get("users", {}), bot: 50}  # as in the room settings
    await boss.client.room_put_state(room_id, "m.room.power_levels", content)
    mark, presences = boss.mark(room_id), len(xmpp_person.presences)
    await boss.send_text(room_id, f"!group link xmpp:{room}")
    answer = await boss.wait_for(
        room_id, lambda e: e.get("sender") == bot and e.get("type") == "m.room.message", start=mark
    )
    assert "Linked" in answer["content"]["body"], answer["content"]
    await wait_presence(xmpp_person, relay_joined(room), start=presences)
    return room, room_id


async def wire_type(person, room_id: str, event_id: str) -> dict:
    """The event as the homeserver holds it (what went over the wire; matrix-nio's own
    ``room_get_event`` would decrypt it)."""
    from urllib.parse import quote

    import aiohttp

    client = person.client
    url = f"{client.homeserver}/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def send_encrypted_file(boss: EncryptedPerson, room_id: str, name: str, data: bytes, *,
                              tamper: bool = False) -> None:  # fmt: skip
    ciphertext, keys = encrypt_attachment(data)
    if tamper:
        ciphertext = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    response, _ = await boss.client.upload(
        lambda *_: ciphertext, content_type="application/octet-stream", filesize=len(ciphertext)
    )
    assert isinstance(response, UploadResponse), response
    content = {
        "msgtype": "m.image",
        "body": name,
        "file": {"url": response.content_uri, **keys},
        "info": {"mimetype": "image/png", "size": len(data)},
    }
    await boss.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)


async def test_a_file_from_an_encrypted_group_room_reaches_xmpp_decrypted_byte_identical(
    xmpp_stack, prosody, xmpp_person, encrypted_boss
):
    alice = await xmpp_person("alice")
    room, room_id = await encrypted_linked_group(
        xmpp_stack, encrypted_boss, alice, "Alice E", prosody
    )
    mark = alice.mark()
    await send_encrypted_file(encrypted_boss, room_id, "plan.png", PNG)
    got = await alice.wait_for(
        lambda m: child_of(m, "jabber:x:oob", "x") is not None and m["from"].bare == room,
        start=mark,
    )
    file_url = child_of(got, "jabber:x:oob", "x").find("{jabber:x:oob}url").text
    async with aiohttp.ClientSession() as http, http.get(file_url) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG


async def test_a_tampered_file_from_an_encrypted_group_room_is_refused_saying_why(
    xmpp_stack, prosody, xmpp_person, encrypted_boss
):
    bob = await xmpp_person("bob")
    room, room_id = await encrypted_linked_group(xmpp_stack, encrypted_boss, bob, "Bob E", prosody)
    mark, xmpp_mark = encrypted_boss.mark(room_id), bob.mark()
    await send_encrypted_file(encrypted_boss, room_id, "forged.png", PNG, tamper=True)
    refusal = await encrypted_boss.wait_for_text(
        room_id, xmpp_stack.bot_id, "Not sent to xmpp", start=mark
    )
    assert "does not match the hash" in refusal["content"]["body"]
    # nothing reached XMPP: a later message does, alone
    await encrypted_boss.send_text(room_id, "after the forged file")
    await bob.wait_for(lambda m: m["body"] == "after the forged file", start=xmpp_mark)
    assert not [m for m in bob.messages[xmpp_mark:] if child_of(m, "jabber:x:oob", "x") is not None]
