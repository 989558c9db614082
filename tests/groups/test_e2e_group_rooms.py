"""Group rooms end to end: a real Synapse, the bridge as a process with the groups and
policy plugins, matrix-nio clients as the people."""

from __future__ import annotations

import pytest
import pytest_asyncio
from nio import RoomGetStateEventResponse

from anywhere.bridge.testing.stack import Stack

pytestmark = pytest.mark.e2e

RULES = """
- type: require_verified
  id: verified-groups
  actions: [group.create]
  methods: [code]
  scope: {users: ["@unverified*"]}
"""


@pytest.fixture(scope="module")
def groups_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("groups")
    (workdir / "rules.yaml").write_text(RULES)
    settings = {"policy": {"rules_file": str(workdir / "rules.yaml")}}
    extra = {"bridge": {"permissions": {"localhost": "user"}}}
    stack = Stack(workdir, ["basics", "policy", "groups"], settings, bridge_extra=extra)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture
async def people(groups_stack):
    made = []

    async def make(*localparts):
        users = [await groups_stack.user(name) for name in localparts]
        made.extend(users)
        return users

    yield make
    for user in made:
        await user.close()


async def ask(user, room, bot_id, text, expect):
    mark = user.mark(room)
    await user.send_text(room, text)
    reply = await user.wait_for_notice(room, bot_id, expect, start=mark)
    return reply["content"]["body"]


async def wait_invited(user, room_id, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while room_id not in user.invites:
        assert time.monotonic() < deadline, f"{user.user_id} was not invited to {room_id}"
        await user.sync_once()


async def state(user, room_id, event_type, state_key=""):
    response = await user.client.room_get_state_event(room_id, event_type, state_key)
    assert isinstance(response, RoomGetStateEventResponse), response
    return response.content


def room_id_in(text: str) -> str:
    return next(word for word in text.split() if word.startswith("!")).rstrip(".:,")


async def test_create_invites_the_people_names_the_room_and_makes_the_creator_admin(
    groups_stack, people
):
    bot = groups_stack.bot_id
    boss, ana, ben = await people("boss1", "ana1", "ben1")
    dm = await boss.dm(bot)
    body = await ask(
        boss, dm, bot, f'!group create "Decision tonight" {ana.user_id} {ben.user_id}', "group"
    )
    assert "Created the group 'Decision tonight'" in body
    assert f"Invited {ana.user_id}, {ben.user_id}." in body
    room_id = room_id_in(body)
    for person in (boss, ana, ben):
        await wait_invited(person, room_id)
    await boss.client.join(room_id)
    await ana.client.join(room_id)
    assert (await state(boss, room_id, "m.room.name"))["name"] == "Decision tonight"
    assert boss.user_id in (await state(boss, room_id, "m.room.topic"))["topic"]
    levels = await state(boss, room_id, "m.room.power_levels")
    assert levels["users"][boss.user_id] == 100
    assert levels["users"].get(ana.user_id, 0) == 0
    listed = await ask(boss, dm, bot, "!group list", "groups")
    assert "Decision tonight" in listed and room_id in listed


async def test_admins_add_and_remove_members_and_others_are_told_why_not(groups_stack, people):
    bot = groups_stack.bot_id
    boss, ana, cai = await people("boss2", "ana2", "cai2")
    dm = await boss.dm(bot)
    body = await ask(boss, dm, bot, f"!group create Budget {ana.user_id}", "Created")
    room_id = room_id_in(body)
    await wait_invited(boss, room_id)
    await boss.client.join(room_id)
    await wait_invited(ana, room_id)
    await ana.client.join(room_id)
    await boss.wait_joined(room_id, boss.user_id)

    body = await ask(boss, room_id, bot, f"!group add {cai.user_id}", "Invited")
    assert body == f"Invited {cai.user_id}."
    await wait_invited(cai, room_id)

    refused = await ask(ana, room_id, bot, f"!group remove {boss.user_id}", "only the group")
    assert "admins and moderators" in refused

    body = await ask(boss, room_id, bot, f"!group remove {ana.user_id}", "Removed")
    assert body == f"Removed {ana.user_id}."
    member = await state(boss, room_id, "m.room.member", ana.user_id)
    assert member["membership"] == "leave"

    from_dm = await ask(boss, dm, bot, f"!group add {ana.user_id}", "direct chat")
    assert "--room" in from_dm
    body = await ask(boss, dm, bot, f"!group add --room {room_id} {ana.user_id}", "Invited")
    assert body == f"Invited {ana.user_id}."


async def test_a_refused_group_says_why_and_bad_ids_are_named(groups_stack, people):
    bot = groups_stack.bot_id
    (newcomer,) = await people("unverified1")
    dm = await newcomer.dm(bot)
    body = await ask(newcomer, dm, bot, "!group create Secret @x:localhost", "may not")
    assert body.startswith("You may not create a group: ")
    assert "verif" in body  # the policy engine's reason
    body = await ask(newcomer, dm, bot, "!group create Secret alice", "not a Matrix user ID")
    assert "'alice' is not a Matrix user ID" in body
    body = await ask(newcomer, dm, bot, "!group frobnicate", "invalid choice")
    assert "usage: !group" in body


async def test_link_is_hidden_without_a_connector_that_links_groups(groups_stack, people):
    bot = groups_stack.bot_id
    (someone,) = await people("someone1")
    dm = await someone.dm(bot)
    body = await ask(someone, dm, bot, "!group --help", "usage")
    assert "create" in body and "remove" in body
    assert "link" not in body
    body = await ask(someone, dm, bot, "!group link xmpp:room@conference.localhost", "invalid")
    assert "invalid choice: 'link'" in body


async def test_a_person_who_left_a_group_can_no_longer_manage_it_from_their_direct_chat(
    groups_stack, people
):
    bot = groups_stack.bot_id
    boss, ana, cai = await people("boss3", "ana3", "cai3")
    dm = await boss.dm(bot)
    body = await ask(boss, dm, bot, f"!group create Leavers {ana.user_id}", "Created")
    room_id = room_id_in(body)
    await wait_invited(boss, room_id)
    await boss.client.join(room_id)
    await wait_invited(ana, room_id)
    await ana.client.join(room_id)
    await boss.wait_joined(room_id, ana.user_id)
    await boss.client.room_leave(room_id)
    await ana.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == boss.user_id
            and e["content"].get("membership") == "leave"
        ),
    )

    refused = await ask(boss, dm, bot, f"!group add --room {room_id} {cai.user_id}", "not a member")
    assert f"you are not a member of {room_id}" in refused
    refused = await ask(
        boss, dm, bot, f"!group remove --room {room_id} {ana.user_id}", "not a member"
    )
    assert "not a member" in refused
    member = await state(ana, room_id, "m.room.member", ana.user_id)
    assert member["membership"] == "join"
    await cai.sync_once()  # the refusal came after the bot decided: an invite would be here
    assert room_id not in cai.invites


async def test_a_moderator_cannot_have_the_bot_remove_someone_at_or_above_their_level(
    groups_stack, people
):
    bot = groups_stack.bot_id
    boss, mod, peer, senior, member = await people("boss4", "mod4", "peer4", "senior4", "mem4")
    dm = await boss.dm(bot)
    others = " ".join(p.user_id for p in (mod, peer, senior, member))
    body = await ask(boss, dm, bot, f"!group create Ranks {others}", "Created")
    room_id = room_id_in(body)
    for person in (boss, mod, peer, senior, member):
        await wait_invited(person, room_id)
        await person.client.join(room_id)
    await boss.wait_joined(room_id, member.user_id)
    levels = await state(boss, room_id, "m.room.power_levels")
    levels["users"].update({mod.user_id: 50, peer.user_id: 50, senior.user_id: 99})
    await boss.client.room_put_state(room_id, "m.room.power_levels", levels)
    await mod.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.power_levels"
            and e["content"].get("users", {}).get(senior.user_id) == 99
        ),
    )

    for target, level in ((peer, 50), (senior, 99), (boss, 100)):
        refused = await ask(mod, room_id, bot, f"!group remove {target.user_id}", "cannot remove")
        assert f"their power level ({level}) is not below yours (50)" in refused
    for target in (peer, senior, boss):
        assert (await state(boss, room_id, "m.room.member", target.user_id))["membership"] == "join"
    body = await ask(mod, room_id, bot, f"!group remove {member.user_id}", "Removed")
    assert body == f"Removed {member.user_id}."
