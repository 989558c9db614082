"""Interop with Element's own crypto: people whose client is matrix-js-sdk with its Rust
crypto (``initRustCrypto``, the matrix-rust-sdk in WASM, as Element Web runs it) talk to
the bot in encrypted rooms on a real Synapse. Needs node and the npm packages of
tests/crypto/js/package.json in ``~/.cache/anywhere-crypto-js`` (or
``$ANYWHERE_CRYPTO_JS_MODULES``); skipped, saying which is missing, otherwise (failed
under ``CI=true``)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import pytest_asyncio

from anywhere.bridge.testing.fixtures import skip_unless_ci

from .conftest import log_size, wait_for_log
from .js_person import JsPerson, missing

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def js_person(anywhere_stack):
    """Factory: ``alice = await js_person("alice")`` registers someone whose client is
    matrix-js-sdk with Rust crypto."""
    if (reason := missing()) is not None:
        skip_unless_ci(reason)  # under CI=true a missing requirement fails the run
    made: list[JsPerson] = []

    async def make(name: str) -> JsPerson:
        person = await JsPerson.register(anywhere_stack, f"{name}_{secrets.token_hex(3)}")
        made.append(person)
        return person

    yield make
    for person in made:
        await person.close()


def text_from(sender: str, contains: str):
    return lambda e: (
        e["sender"] == sender
        and e["type"] == "m.room.message"
        and contains in str(e["content"].get("body", ""))
    )


def assert_every_bot_message_readable(person: JsPerson, room_id: str, bot_id: str) -> None:
    """Nothing the bot sent shows as "unable to decrypt" in Element's crypto."""
    from_bot = [e for e in person.events(room_id) if e["sender"] == bot_id]
    assert [e["event_id"] for e in from_bot if e["utd"]] == []


async def test_element_crypto_direct_chat_like_element_x_ping_and_help_answered_encrypted(
    js_person, bot_id
):
    alice = await js_person("alice")
    room = await alice.call("create_dm", user=bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.call("send_text", room=room, body="!ping")
    pong = await alice.wait_for(room, text_from(bot_id, "pong"))
    assert pong["encrypted"] and not pong["utd"]  # came encrypted; Element's crypto read it
    await alice.call("send_text", room=room, body="!help")
    help_text = await alice.wait_for(room, text_from(bot_id, "!ping"))
    assert help_text["encrypted"] and not help_text["utd"]
    assert_every_bot_message_readable(alice, room, bot_id)


async def test_element_crypto_private_room_created_then_bot_invited_answers_encrypted(
    js_person, bot_id
):
    alice = await js_person("alice")
    room = await alice.call("create_room", name="Decision at 10 p.m.", invite=[])
    await alice.wait_joined(room, alice.user_id)
    await alice.call("send_text", room=room, body="before the bot came")
    await alice.call("invite", room=room, user=bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.call("send_text", room=room, body="!ping room")
    pong = await alice.wait_for(room, text_from(bot_id, "pong room"))
    assert pong["encrypted"] and not pong["utd"]
    assert_every_bot_message_readable(alice, room, bot_id)


async def test_element_crypto_excluding_insecure_devices_still_shares_its_keys_with_the_bot(
    js_person, bot_id
):
    """Element's "exclude insecure devices" (js-sdk OnlySignedDevicesIsolationMode) shares
    room keys only with devices their owner cross-signed: the bot's cross-signing makes its
    device one of them, so it reads and answers."""
    alice = await js_person("alice")
    await alice.call("bootstrap_cross_signing")  # the strategy needs the sender's own
    await alice.call("exclude_insecure_devices", value=True)
    room = await alice.call("create_dm", user=bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.call("send_text", room=room, body="!ping insecure excluded")
    pong = await alice.wait_for(room, text_from(bot_id, "pong insecure excluded"))
    assert pong["encrypted"] and not pong["utd"]
    # what Element shows: the bot's only device is signed by its owner (no red shield),
    # though not verified (Alice never verified the bot's user)
    devices = await alice.call("devices_status", user=bot_id)
    assert len(devices) == 1, devices
    [device] = devices.values()
    assert device["signed_by_owner"] and not device["verified"], devices


async def test_element_crypto_never_sending_to_unverified_sessions_withholds_the_key_saying_so(
    js_person, bot_id, anywhere_stack
):
    """Element's "never send encrypted messages to unverified sessions" shares only with
    devices of users the person verified; cross-signing alone does not make the bot one
    (that needs the person to verify the bot's user). The bot learns why from the
    withheld notice (m.unverified) and logs it, instead of waiting silently."""
    alice = await js_person("alice")
    await alice.call("bootstrap_cross_signing")
    await alice.call("blacklist_unverified_devices", value=True)
    room = await alice.call("create_dm", user=bot_id)
    await alice.wait_joined(room, bot_id)
    logged = log_size(anywhere_stack)
    await alice.call("send_text", room=room, body="!ping unverified")
    line = await wait_for_log(anywhere_stack, "a room key was withheld from the bot", after=logged)
    assert room in line and "m.unverified" in line


async def test_a_restart_keeps_the_bots_cross_signing_identity_and_element_s_trust(
    js_person, bot_id, anywhere_stack
):
    """The cross-signing keys come back from the database: after a restart the same
    master key signs the device, so a client excluding insecure devices still shares
    its keys with the bot (and sees no identity change)."""
    import asyncio

    before = await wait_for_log(anywhere_stack, "the bot's device is cross-signed")
    logged = log_size(anywhere_stack)
    await asyncio.to_thread(anywhere_stack.bridge.stop)
    await asyncio.to_thread(anywhere_stack.bridge.start)
    after = await wait_for_log(anywhere_stack, "the bot's device is cross-signed", after=logged)
    await wait_for_log(anywhere_stack, "encrypted rooms ready", after=logged)
    assert _master_key(after) == _master_key(before)

    alice = await js_person("alice")
    await alice.call("bootstrap_cross_signing")
    await alice.call("exclude_insecure_devices", value=True)
    room = await alice.call("create_dm", user=bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.call("send_text", room=room, body="!ping after restart")
    pong = await alice.wait_for(room, text_from(bot_id, "pong after restart"))
    assert pong["encrypted"] and not pong["utd"]


def _master_key(log_line: str) -> str:
    return log_line.split("master_key=", 1)[1].split()[0]


async def test_excluding_insecure_devices_is_in_force_the_bot_reads_a_device_without_it_not(
    js_person, encrypted_person, bot_id
):
    """The same setting really excludes: in one room, Bob's device (matrix-nio, never
    cross-signed) cannot read Alice's message while the cross-signed bot answers it."""
    alice, bob = await js_person("alice"), await encrypted_person("bob")
    await alice.call("bootstrap_cross_signing")
    await alice.call("exclude_insecure_devices", value=True)
    room = await alice.call("create_room", name="Insecure excluded", invite=[bot_id, bob.user_id])
    await alice.wait_joined(room, bot_id)
    await bob.client.join(room)
    await alice.wait_joined(room, bob.user_id)
    await bob.wait_joined(room, bob.user_id)  # Bob's client is in the room's timeline
    event_id = await alice.call("send_text", room=room, body="!ping cross-signed only")
    pong = await alice.wait_for(room, text_from(bot_id, "pong cross-signed only"))
    assert pong["encrypted"] and not pong["utd"]
    await bob.wait_for(room, lambda e: e.get("event_id") == event_id)
    assert event_id in bob.undecryptable.get(room, [])  # Bob's device was excluded


async def test_element_crypto_answers_the_bots_key_request_for_a_key_lost_while_it_was_down(
    js_person, anywhere_stack
):
    """Element's own crypto starts a new session while the bridge is SIGKILLed: Synapse
    drops its room key for the bot (no to-device data for an appservice that is down).
    After the restart the bot asks for the key, Element's crypto forwards it (it had shared
    that session with the bot's device), and the command is answered once."""
    stack, bot_id = anywhere_stack, anywhere_stack.bot_id
    alice = await js_person("alice")
    room = await alice.call("create_dm", user=bot_id)
    await alice.wait_joined(room, bot_id)
    await alice.call("send_text", room=room, body="!ping js before")
    await alice.wait_for(room, text_from(bot_id, "pong js before"))

    await asyncio.to_thread(stack.bridge.kill)
    await alice.call("discard_room_key", room=room)
    lost = await alice.call("send_text", room=room, body="!ping js while down")
    await stack.homeserver_marks_bridge("down")
    logged = log_size(stack)
    await asyncio.to_thread(stack.bridge.start)
    await stack.homeserver_marks_bridge("up")
    waiting = await wait_for_log(stack, "waiting for the room key", after=logged)
    assert lost in waiting  # its key did not come with it: it was dropped
    session = waiting.split("session_id=")[1].split()[0]
    asked = await stack.bridge.wait_for_line("asked the sender's devices", session, after=logged)
    await stack.bridge.wait_for_line("room key received", session, after=logged)  # forwarded
    pong = await alice.wait_for(room, text_from(bot_id, "pong js while down"), timeout=120)
    assert alice.user_id in asked
    assert pong["encrypted"] and not pong["utd"]
    await alice.call("send_text", room=room, body="!ping js marker")
    await alice.wait_for(room, text_from(bot_id, "pong js marker"))
    answers = [e for e in alice.events(room) if text_from(bot_id, "pong js while down")(e)]
    assert len(answers) == 1
    assert_every_bot_message_readable(alice, room, bot_id)
