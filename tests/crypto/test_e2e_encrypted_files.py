"""Files in encrypted rooms, end to end: a real Synapse, the bridge with the drive as a
process, a person whose client encrypts (matrix-nio with vodozemac) and encrypts its
attachments (``file`` instead of ``url``) with matrix-nio's own code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio
from nio import DownloadError, UploadResponse
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

from anywhere.bridge.testing.e2ee import EncryptedPerson
from anywhere.bridge.testing.fixtures import skip_unless_ci
from anywhere.bridge.testing.stack import Stack

from .conftest import log_size, wait_for_log
from .js_person import JsPerson, missing

pytestmark = pytest.mark.e2e
MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


@pytest.fixture(scope="module")
def files_stack(tmp_path_factory) -> Iterator[Stack]:
    """Synapse and a bridge with the drive (on osfs://)."""
    workdir = tmp_path_factory.mktemp("e2ee-files")
    store = workdir / "drive-store"
    with Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={"drive": {"storage_url": f"osfs://{store}"}},
    ) as stack:
        yield stack


@pytest_asyncio.fixture
async def alice(files_stack, tmp_path):
    localpart = f"alice_{secrets.token_hex(3)}"
    person = await EncryptedPerson.register(files_stack, localpart, tmp_path / localpart)
    yield person
    await person.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def encrypted_folder_room(person: EncryptedPerson, bot: str, name: str) -> tuple[str, str]:
    """An encrypted DM with the bot, and a folder made from it whose room the owner
    accepted and turned encryption on in (as in Element's room settings)."""
    dm = await person.create_encrypted_room([bot], direct=True)
    await person.wait_joined(dm, bot)
    await person.send_text(dm, f"!drive mkdir {name}")
    await person.wait_for_text(dm, bot, f"Created the folder {name}")
    while not person.invites:
        await person.sync_once()
    room = person.invites.pop()
    await person.client.join(room)
    await person.wait_joined(room, person.user_id)
    await person.client.room_put_state(room, "m.room.encryption", MEGOLM)
    await person.wait_for(room, lambda e: e.get("type") == "m.room.encryption")
    return dm, room


async def send_encrypted_file(
    person: EncryptedPerson,
    room: str,
    name: str,
    data: bytes,
    *,
    tamper: bool = False,
    file_changes: dict[str, Any] | None = None,
) -> str:
    """Post ``data`` as an encrypted attachment, the way an encrypting client does:
    ciphertext uploaded, the key and hash only inside the encrypted event. ``tamper``
    uploads a ciphertext with one bit changed (the hash stays the original's)."""
    ciphertext, keys = encrypt_attachment(data)
    if tamper:
        changed = bytearray(ciphertext)
        changed[len(changed) // 2] ^= 0x01
        ciphertext = bytes(changed)
    response, _ = await person.client.upload(
        lambda *_: ciphertext,
        content_type="application/octet-stream",
        filesize=len(ciphertext),
    )
    assert isinstance(response, UploadResponse), response
    file = {"url": response.content_uri, **keys, **(file_changes or {})}
    content = {
        "msgtype": "m.file",
        "body": name,
        "file": file,
        "info": {"size": len(data), "mimetype": "application/octet-stream"},
    }
    sent = await person.client.room_send(
        room, "m.room.message", content, ignore_unverified_devices=True
    )
    return sent.event_id


async def fetch_attachment(person: EncryptedPerson, content: dict[str, Any]) -> bytes:
    """The plain bytes of a posted file, decrypted by matrix-nio's own code."""
    file = content["file"]
    response = await person.client.download(mxc=file["url"])
    assert not isinstance(response, DownloadError), response
    return decrypt_attachment(response.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])


def is_file_named(name: str):
    return lambda e: e.get("type") == "m.room.message" and e.get("content", {}).get("body") == name


async def test_a_file_into_an_encrypted_folder_room_is_stored_and_comes_back_encrypted(
    alice, files_stack
):
    bot = files_stack.bot_id
    dm, room = await encrypted_folder_room(alice, bot, "Secret")
    data = os.urandom(1_500_000)
    mark = alice.mark(room)
    await send_encrypted_file(alice, room, "plan.bin", data)
    saved = await alice.wait_for_text(room, bot, "Saved plan.bin in Secret", start=mark)
    assert saved["decrypted"] is True

    # shared from the drive into an encrypted room (the DM): sent encrypted
    mark = alice.mark(dm)
    await alice.send_text(dm, "!drive get Secret/plan.bin")
    posted = await alice.wait_for(dm, is_file_named("plan.bin"), start=mark)
    assert posted["decrypted"] is True
    content = posted["content"]
    assert "url" not in content and content["file"]["v"] == "v2"
    assert content["org.anywhere.drive"]["sha256"] == sha(data)
    assert sha(await fetch_attachment(alice, content)) == sha(data)


async def test_a_tampered_encrypted_file_is_refused_with_the_reason_and_nothing_is_stored(
    alice, files_stack
):
    bot = files_stack.bot_id
    _, room = await encrypted_folder_room(alice, bot, "Evidence")
    logged, mark = log_size(files_stack), alice.mark(room)
    await send_encrypted_file(alice, room, "forged.bin", os.urandom(300_000), tamper=True)
    answer = await alice.wait_for_text(room, bot, "Not saved", start=mark)
    assert "does not match the hash" in answer["content"]["body"]
    line = await wait_for_log(files_stack, "encrypted file refused", after=logged)
    assert "does not match the hash" in line
    # nothing stored: the listing (asked after the refusal) does not have it
    await alice.send_text(room, "!drive ls")
    listing = await alice.wait_for_text(room, bot, "empty", start=mark)
    assert "forged.bin" not in listing["content"]["body"]


async def test_an_encrypted_file_object_of_version_1_is_refused_saying_why(alice, files_stack):
    bot = files_stack.bot_id
    _, room = await encrypted_folder_room(alice, bot, "Old")
    mark = alice.mark(room)
    await send_encrypted_file(alice, room, "old.bin", b"old client", file_changes={"v": "v1"})
    answer = await alice.wait_for_text(room, bot, "Not saved", start=mark)
    assert "version 'v1'; only 'v2' is supported" in answer["content"]["body"]


async def test_elements_crypto_sends_a_file_into_an_encrypted_folder_room_and_opens_ours(
    files_stack,
):
    """Element's side: matrix-js-sdk with Rust crypto, attachments encrypted and opened
    with WebCrypto as Element does (64-bit counter)."""
    if (reason := missing()) is not None:
        skip_unless_ci(reason)
    alice = await JsPerson.register(files_stack, f"alice_{secrets.token_hex(3)}")
    try:
        bot = files_stack.bot_id
        dm = await alice.call("create_dm", user=bot)
        await alice.wait_joined(dm, bot)
        await alice.call("send_text", room=dm, body="!drive mkdir Element")
        await alice.wait_for(dm, js_text_from(bot, "Created the folder Element"))
        room = await js_invite(alice)
        await alice.call("join", room=room)
        await alice.wait_joined(room, alice.user_id)
        await alice.call("put_state", room=room, type="m.room.encryption", content=MEGOLM)
        await alice.wait_for(room, lambda e: e["type"] == "m.room.encryption")
        data = os.urandom(200_000)
        encoded = base64.b64encode(data).decode()
        await alice.call("send_encrypted_file", room=room, name="element.bin", data_b64=encoded)
        await alice.wait_for(room, js_text_from(bot, "Saved element.bin in Element"))

        await alice.call("send_text", room=dm, body="!drive get Element/element.bin")
        posted = await alice.wait_for(
            dm, lambda e: e["sender"] == bot and e["content"].get("body") == "element.bin"
        )
        assert posted["encrypted"] is True and not posted["utd"]
        assert "url" not in posted["content"]
        opened = await alice.call("fetch_encrypted_file", file=posted["content"]["file"])
        assert sha(base64.b64decode(opened)) == sha(data)
    finally:
        await alice.close()


def js_text_from(sender: str, contains: str):
    return lambda e: (
        e["sender"] == sender
        and e["type"] == "m.room.message"
        and contains in str(e["content"].get("body", ""))
    )


async def js_invite(person: JsPerson, timeout: float = 60.0) -> str:
    """The room the js-sdk person is invited to, once their client has the invite."""
    deadline = time.monotonic() + timeout
    while not (rooms := await person.call("invited_rooms")):
        assert time.monotonic() < deadline, f"{person.user_id} got no invite"
        await asyncio.sleep(0.2)  # polling the client's state for the invite to show
    return rooms[0]
