"""Shared folders end to end: a real Synapse, the bridge with the drive, matrix-nio people.

Accepting a share is joining the folder's room; declining is rejecting the invite."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def someone(person, any_drive_stack):
    """Factory of people on each drive stack in turn (osfs://, mem://, PostgreSQL)."""
    stack = any_drive_stack
    return lambda: person(stack)


async def test_an_invite_gives_no_access_until_accepted_by_joining(someone):
    alice, bob = await someone(), await someone()
    room = await alice.new_folder("Work")
    saved = await alice.saved(room, await alice.send_file(room, "plan.txt", b"the plan"))
    assert "Saved plan.txt in Work" in saved

    await alice.ask(room, f"!drive invite {bob.id} viewer", f"Invited {bob.id} to Work as viewer")
    invite_room = await bob.wait_invite()
    assert invite_room == room
    await bob.ask(None, "!drive ls Work", "not accepted yet")
    listing = await bob.ask(None, "!drive ls")
    assert "Work/ — invited as viewer by " + alice.id in listing

    await bob.join(room)
    invite = await bob.user.wait_for(
        room,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == bob.id
            and e["content"].get("membership") == "invite"
        ),
    )
    assert invite["content"]["reason"] == (
        f"{alice.id} shares the folder 'Work' with you as viewer. Join this room to accept; "
        "reject the invite to decline."
    )
    await bob.user.wait_for_notice(room, bob.bot, f"{bob.id} accepted: viewer of Work")
    assert "plan.txt — 8 B, v1" in await bob.ask(room, "!drive ls")
    assert "Work/ — viewer, shared by " + alice.id in await bob.ask(None, "!drive ls")


async def test_declining_the_invite_gives_nothing(someone):
    alice, bob = await someone(), await someone()
    room = await alice.new_folder("Plans")
    await alice.ask(room, f"!drive invite {bob.id}", "as editor")
    await bob.wait_invite()
    await bob.user.client.room_leave(room)  # reject the invite
    await alice.user.wait_for(
        room,
        lambda e: e.get("state_key") == bob.id and e["content"].get("membership") == "leave",
    )
    members = await alice.ask(room, "!drive members")
    assert bob.id not in members
    await bob.ask(None, "!drive ls Plans", "you have no folder named 'Plans'")


async def test_revoke_removes_the_person_and_their_access(someone):
    alice, bob = await someone(), await someone()
    room = await alice.new_folder("Budget")
    await alice.ask(room, f"!drive invite {bob.id} editor", "Invited")
    await bob.join(await bob.wait_invite())
    await alice.user.wait_for_notice(room, alice.bot, "accepted")
    await bob.ask(room, "!drive ls", "Budget: empty")
    await bob.ask(room, "!drive invite @someone:localhost viewer", "only the owner")

    await alice.ask(None, f"!drive revoke Budget {bob.id}", "no longer has access to Budget")
    kick = await alice.user.wait_for(
        room,
        lambda e: (
            e.get("state_key") == bob.id
            and e["content"].get("membership") == "leave"
            and e.get("sender") == bob.bot
        ),
    )
    assert kick["content"]["reason"] == f"{alice.id} stopped sharing Budget"
    await bob.ask(None, "!drive ls Budget", "you have no folder named 'Budget'")


async def test_leaving_the_room_leaves_the_share(someone):
    alice, bob = await someone(), await someone()
    room = await alice.new_folder("Trip")
    await alice.ask(room, f"!drive invite {bob.id} viewer", "Invited")
    await bob.join(await bob.wait_invite())
    await alice.user.wait_for_notice(room, alice.bot, "accepted")
    await bob.user.client.room_leave(room)
    await alice.user.wait_for_notice(room, alice.bot, f"{bob.id} left the share of Trip")
    assert bob.id not in await alice.ask(room, "!drive members")
    await bob.ask(None, "!drive ls Trip", "you have no folder named 'Trip'")

    carol = await someone()
    await alice.ask(room, f"!drive invite {carol.id} viewer", "Invited")
    await carol.join(await carol.wait_invite())
    await alice.user.wait_for_notice(room, alice.bot, f"{carol.id} accepted")
    await carol.ask(None, "!drive leave Trip", "You left Trip.")
    await alice.user.wait_for(
        room,
        lambda e: e.get("state_key") == carol.id and e["content"].get("membership") == "leave",
    )
    assert carol.id not in await alice.ask(room, "!drive members")
    await alice.ask(room, "!drive leave", "owners cannot leave it")


async def test_help_lists_the_actions_and_each_action_has_its_usage(someone):
    """!drive help, !drive alone and !help drive give the same list: one action a line,
    with its arguments."""
    alice = await someone()
    overview = await alice.ask(None, "!drive help")
    assert await alice.ask(None, "!drive") == overview
    assert await alice.ask(None, "!help drive") == overview
    lines = overview.splitlines()
    for action in ("ls", "get", "mkdir", "mv", "rm", "trash", "restore", "versions", "revert",
                   "share", "quota", "invite", "revoke", "leave", "members", "empty"):  # fmt: skip
        assert sum(line.startswith(f"  !drive {action} ") for line in lines) == 1, action
    assert "  !drive mv SOURCE DESTINATION — Move or rename" in lines
    assert "  !drive revert PATH REV — Make an old version current again" in lines
    usage = await alice.ask(None, "!drive revert --help")
    assert "usage: !drive revert [-h] PATH REV" in usage
    await alice.ask(None, "!drive revert a.txt two", "invalid int value: 'two'")


async def test_a_viewer_cannot_write(someone):
    alice, bob = await someone(), await someone()
    room = await alice.new_folder("Board")
    await alice.ask(room, f"!drive invite {bob.id} viewer", "Invited")
    await bob.join(await bob.wait_invite())
    await alice.user.wait_for_notice(room, alice.bot, "accepted")
    answer = await bob.saved(room, await bob.send_file(room, "mine.txt", b"sneaky"))
    assert answer.startswith("Not saved: you are a viewer of 'Board'")
    await bob.ask(room, "!drive mkdir stuff", "you are a viewer")
    assert "Board: empty" in await alice.ask(room, "!drive ls")
