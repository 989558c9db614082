"""Who may reach which call, end to end: calls placed the way Element places them (a
two-person direct chat, no ``invitee``) reach every call target, and only a conference
room's joined members reach its conference."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3

import pytest
from calls_peer import CallPeer

from anywhere.bridge.testing.stack import MatrixUser

pytestmark = pytest.mark.e2e


def is_call(kind: str, sender: str, call: CallPeer | None = None):
    return lambda e: (
        e.get("type") == f"m.call.{kind}"
        and e.get("sender") == sender
        and (call is None or e["content"].get("call_id") == call.call_id)
    )


def body_has(text: str):
    return lambda e: text in str(e.get("content", {}).get("body"))


def membership_of(user_id: str, membership: str):
    return lambda e: (
        e.get("type") == "m.room.member"
        and e.get("state_key") == user_id
        and e.get("content", {}).get("membership") == membership
    )


async def conference(owner: MatrixUser, bot: str, *members: MatrixUser) -> tuple[str, str]:
    """A group room with the bot and ``members``, and its conference user."""
    room = await owner.create_room([bot], name="Decision tonight")
    await owner.wait_joined(room, bot)
    for member in members:
        await owner.client.room_invite(room, member.user_id)
        await member.client.join(room)
        await owner.wait_joined(room, member.user_id)
    mark = owner.mark(room)
    await owner.send_text(room, "!call conference")
    ready = await owner.wait_for_notice(room, bot, "Conference ready", start=mark)
    return room, re.search(r"call (@\S+:localhost) to join", ready["content"]["body"])[1]


async def element_call(user: MatrixUser, room: str) -> CallPeer:
    """A voice call as Element places it in a two-person room: no invitee."""
    call = CallPeer(user, room)
    await call.place(invitee=None)
    return call


# ----- Element's calls reach every target -----
async def test_element_calls_the_bot_in_a_direct_chat_without_invitee(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = await element_call(alice, room)
    await call.wait_for(is_call("answer", calls_bot, call))
    await call.wait_connected()
    await call.hang_up()


async def test_element_calls_the_memo_user_in_a_direct_chat_without_invitee(person, memo_user):
    alice = await person()
    room = await alice.dm(memo_user)  # the bot is not in this room
    call = await element_call(alice, room)
    await call.wait_for(is_call("answer", memo_user, call))
    await call.wait_connected()
    await call.hear(1.0)
    await call.hang_up()
    memo = await alice.wait_for(room, lambda e: e["content"].get("msgtype") == "m.audio")
    assert memo["sender"] == memo_user


async def test_a_member_calls_the_conference_from_a_direct_chat_without_invitee(person, calls_bot):
    alice = await person()
    group, conference_user = await conference(alice, calls_bot)
    direct = await alice.dm(conference_user)  # the way docs/calls.md tells Element users
    call = await element_call(alice, direct)
    await call.wait_for(is_call("answer", conference_user, call))
    await call.wait_connected()
    await alice.wait_for(group, body_has(f"{alice.user_id} joined the conference (1 connected)"))
    await call.hang_up()


# ----- only the room's members reach its conference -----
async def test_a_stranger_can_neither_add_nor_call_the_conference_user(person, calls_bot):
    alice, stranger = await person(), await person()
    _, conference_user = await conference(alice, calls_bot)
    # a direct chat with the conference user: it declines, saying why
    direct = await stranger.create_room([conference_user], direct=True)
    left = await stranger.wait_for(direct, membership_of(conference_user, "leave"))
    assert "Only members" in left["content"].get("reason", "")
    # naming it as invitee in a room the bridge is in (the bot's direct chat)
    room = await stranger.dm(calls_bot)
    eavesdrop = CallPeer(stranger, room)
    await eavesdrop.place(invitee=conference_user)
    marker = CallPeer(stranger, room)  # a later call the bot answers: the first was read
    await marker.place(invitee=calls_bot)
    await marker.wait_for(is_call("answer", calls_bot, marker))
    assert not [e for e in eavesdrop.events if e["content"].get("call_id") == eavesdrop.call_id]
    assert not [e for e in stranger.timeline[room] if membership_of(conference_user, "join")(e)]
    await eavesdrop.close()
    await marker.hang_up()


async def test_a_kicked_member_calling_from_their_direct_chat_is_refused(person, calls_bot):
    alice, bob = await person(), await person()
    group, conference_user = await conference(alice, calls_bot, bob)
    direct = await bob.dm(conference_user)  # opened while a member
    await alice.client.room_kick(group, bob.user_id, reason="not in this decision")
    await alice.wait_for(group, membership_of(bob.user_id, "leave"))
    call = await element_call(bob, direct)
    reject = await call.wait_for(is_call("reject", conference_user, call))
    assert reject["content"]["version"] == "1"
    notice = await call.wait_for_room(
        lambda e: e["sender"] == conference_user and "not answered" in str(e["content"].get("body"))
    )
    assert "only members of the conference's room" in notice["content"]["body"]
    assert not [e for e in call.events if e["type"] == "m.call.answer"]
    await call.close()


async def test_a_member_who_leaves_the_room_mid_call_is_hung_up(person, calls_bot):
    alice, bob = await person(), await person()
    group, conference_user = await conference(alice, calls_bot, bob)
    direct = await bob.dm(conference_user)
    call = await element_call(bob, direct)
    await call.wait_for(is_call("answer", conference_user, call))
    await call.wait_connected()
    await alice.wait_for(group, body_has(f"{bob.user_id} joined the conference"))
    await bob.client.room_leave(group)
    hangup = await call.wait_for(is_call("hangup", conference_user, call))
    assert hangup["content"]["reason"] == "user_hangup"
    await alice.wait_for(group, body_has(f"{bob.user_id} left the conference (0 connected)"))
    await call.close()


# ----- permissions on every call target -----
async def test_someone_without_permission_cannot_use_the_echo_or_the_memo_user(
    person, calls_bot, memo_user
):
    alice = await person()
    outsider = await person("nopermission")  # "none" in the calls tests' permissions
    room = await alice.create_room([calls_bot, memo_user, outsider.user_id], name="Shared")
    await alice.wait_joined(room, calls_bot)
    await alice.wait_joined(room, memo_user)
    await outsider.client.join(room)
    for target in (calls_bot, memo_user):
        call = CallPeer(outsider, room)
        await call.place(invitee=target)
        await call.wait_for(is_call("reject", target, call))
        notice = await call.wait_for_room(
            lambda e, t=target: e["sender"] == t and "may not use" in str(e["content"].get("body"))
        )
        assert notice["content"]["body"].startswith("Your call was not answered")
        assert not [e for e in call.events if e["type"] == "m.call.answer"]
        await call.close()


async def test_one_person_cannot_take_every_line(person, calls_bot):
    alice = await person()
    calls = []
    for _ in range(2):  # the test bridge lets one person be in 2 calls, of 3 lines
        room = await alice.dm(calls_bot)
        call = CallPeer(alice, room)
        await call.place(invitee=calls_bot)
        await call.wait_for(is_call("answer", calls_bot, call))
        calls.append(call)
    room = await alice.dm(calls_bot)
    third = CallPeer(alice, room)
    await third.place(invitee=calls_bot)
    hangup = await third.wait_for(is_call("hangup", calls_bot, third))
    assert hangup["content"]["reason"] == "user_busy"
    # someone else still gets a line
    bob = await person()
    bobs_room = await bob.dm(calls_bot)
    bobs = CallPeer(bob, bobs_room)
    await bobs.place(invitee=calls_bot)
    await bobs.wait_for(is_call("answer", calls_bot, bobs))
    for call in (*calls, bobs):
        await call.hang_up()
    await third.close()


async def test_an_echo_call_ends_at_its_longest_length(person, calls_bot):
    alice = await person()
    room = await alice.dm(calls_bot)
    call = CallPeer(alice, room)
    await call.place(invitee=calls_bot)
    await call.wait_connected()
    hangup = await call.wait_for(is_call("hangup", calls_bot, call), timeout=60)
    assert hangup["content"]["reason"] == "user_hangup"
    notice = await call.wait_for_room(body_has("the longest a call may last"))
    assert "15 s" in notice["content"]["body"]  # echo_max_seconds of the test bridge
    assert "echo" in notice["content"]["body"]
    await call.close()


async def test_a_direct_chat_opened_before_the_upgrade_is_found_after_a_restart(
    person, calls_bot, calls_stack
):
    """Conference users joined direct chats before the bridge recorded them: at start-up
    it asks the homeserver which rooms they are in."""
    alice = await person()
    _, conference_user = await conference(alice, calls_bot)
    direct = await alice.dm(conference_user)
    await asyncio.to_thread(calls_stack.bridge.stop)
    database = calls_stack.config_path.parent / "data" / "anywhere.db"
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        forgotten = db.execute("DELETE FROM calls_room_user WHERE room_id = ?", (direct,))
        assert forgotten.rowcount == 1
    await asyncio.to_thread(calls_stack.bridge.start)
    # A homeserver race, not what this is about: see Stack.homeserver_marks_bridge.
    await calls_stack.homeserver_marks_bridge("up")
    call = await element_call(alice, direct)
    await call.wait_for(is_call("answer", conference_user, call))
    await call.wait_connected()
    await call.hang_up()
