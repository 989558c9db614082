"""The drive's HTTP API applies the same permission level (``bridge.permissions``) and the
same policy check (``bot.command``, target ``drive``) as the ``!drive`` command, end to
end: a stack of its own, with a person set to ``none`` and a policy rule that refuses
unverified people."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio

from anywhere.bridge.api import Decision
from anywhere.bridge.commands import Command
from anywhere.bridge.services import Permissions
from anywhere.bridge.testing.stack import Stack
from anywhere.plugins.drive.errors import Denied
from anywhere.plugins.drive.http_common import require_permitted

from .conftest import E2E_QUOTA
from .people import Api, DrivePerson

NOBODY = "nobody_drive"  # "none" in this stack's bridge.permissions
RULES = """
- type: require_verified
  id: verify-first
  actions: [bot.command]
  methods: [code]
  scope: {users: ["@unverified*"]}
"""


@pytest.fixture(scope="module")
def permissions_stack(tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("drive-permissions")
    (workdir / "rules.yaml").write_text(RULES)
    settings = {
        "drive": {"storage_url": f"osfs://{workdir / 'drive-store'}", "quota_bytes": E2E_QUOTA},
        "policy": {
            "rules_file": str(workdir / "rules.yaml"),
            "verification": {"sender": "file", "outbox": str(workdir / "outbox.jsonl")},
        },
    }
    permissions = {"localhost": "user", f"@{NOBODY}:localhost": "none"}
    extra = {"bridge": {"permissions": permissions}}
    with Stack(workdir, ["basics", "policy", "drive"], settings, bridge_extra=extra) as stack:
        yield stack


@pytest_asyncio.fixture
async def person(permissions_stack):
    made: list[DrivePerson] = []

    async def make(localpart: str | None = None) -> DrivePerson:
        user = DrivePerson(await permissions_stack.user(localpart), permissions_stack)
        made.append(user)
        return user

    yield make
    for user in made:
        await user.close()


@pytest.mark.e2e
async def test_a_person_set_to_none_is_refused_by_every_drive_route_like_by_the_bot(
    permissions_stack, person
):
    alice, nobody = await person(), await person(NOBODY)
    a, n = Api(permissions_stack, alice), Api(permissions_stack, nobody)
    status, _, body = await a.json("POST", "/folders", json={"name": "Team"})
    assert status == 201, body
    fid = body["id"]
    status, _, _ = await a.json("PUT", f"/folders/{fid}/files/a.txt", data=b"alice's")
    assert status == 201

    attempts = [
        ("POST", "/folders", {"json": {"name": "Mine"}}),
        ("GET", "/folders", {}),
        ("GET", "/quota", {}),
        ("GET", f"/folders/{fid}/list", {}),
        ("PUT", f"/folders/{fid}/files/b.txt", {"data": b"nobody's"}),
        ("POST", f"/folders/{fid}/mkdir", {"json": {"path": "sub"}}),
        ("POST", f"/folders/{fid}/accept", {}),
    ]
    for method, path, kwargs in attempts:
        status, _, body = await n.json(method, path, **kwargs)
        assert status == 403, (method, path, status, body)
        assert body["errcode"] == "M_FORBIDDEN"
        assert "may not use this bridge" in body["error"] and "bridge.permissions" in body["error"]

    # Nothing was made: no folder room invite reached the person (a later invite, sent
    # as a marker, arrives alone), and Alice's folder holds only her file.
    marker = await alice.user.create_room([nobody.id])
    while marker not in nobody.user.invites:
        await nobody.user.sync_once()
    assert set(nobody.user.invites) == {marker}
    _, _, listing = await a.json("GET", f"/folders/{fid}/list")
    assert [e["name"] for e in listing["entries"]] == ["a.txt"]
    _, _, folders = await a.json("GET", "/folders")
    assert [f["name"] for f in folders["folders"]] == ["Team"]


@pytest.mark.e2e
async def test_a_person_the_policy_refuses_the_drive_command_is_refused_over_http_too(
    permissions_stack, person
):
    newcomer, other = await person("unverified_kim"), await person()
    refused = await newcomer.ask(None, "!drive ls", "not allowed")
    assert "verify" in refused
    n = Api(permissions_stack, newcomer)
    status, _, body = await n.json("POST", "/folders", json={"name": "Mine"})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert body["error"].startswith("the drive is not allowed: ")
    assert body["error"].removeprefix("the drive is not allowed: ") in refused  # same reason
    status, _, body = await n.json("GET", "/folders")
    assert status == 403 and "not allowed" in body["error"]
    # someone the rule does not cover is let through
    status, _, body = await Api(permissions_stack, other).json(
        "POST", "/folders", json={"name": "Theirs"}
    )
    assert status == 201, body


# ----- the gate's logic alone (the runtime's answers given, no stack) -----


class _Runtime:
    """What require_permitted reads of the runtime: the permissions service (built on the
    config's permissions and the commands), authorize."""

    def __init__(self, permissions: dict, drive_level: str = "user", refuse: str = "") -> None:
        commands = {"drive": Command("drive", None, level=drive_level)}
        self.permissions = Permissions(permissions, lambda: commands)
        self.refuse = refuse
        self.asked: list[tuple] = []

    async def authorize(self, actor, action, target=None, context=None):
        self.asked.append((actor, action, target, context))
        return Decision(not self.refuse, self.refuse)


class _Plugin:
    def __init__(self, bridge: _Runtime) -> None:
        self.bridge = bridge


@pytest.mark.parametrize(
    ("drive_level", "user", "refusal"),
    [
        ("user", "@kim:example.org", None),
        ("user", "@troll:example.org", "may not use this bridge"),
        ("user", "@kim:elsewhere.org", "may not use this bridge"),  # no level at all
        ("admin", "@kim:example.org", "needs the admin permission level"),
        ("admin", "@boss:example.org", None),
    ],
)
async def test_the_gate_follows_permissions_and_the_drive_commands_level(
    drive_level, user, refusal
):
    permissions = {
        "example.org": "user",
        "@troll:example.org": "none",
        "@boss:example.org": "admin",
    }
    runtime = _Runtime(permissions, drive_level)
    if refusal is None:
        await require_permitted(_Plugin(runtime), user)
        assert runtime.asked == [
            (user, "bot.command", "drive", {"command": "drive", "via": "http"})
        ]
        return
    with pytest.raises(Denied, match=refusal):
        await require_permitted(_Plugin(runtime), user)
    assert runtime.asked == []  # refused before the policy is asked


async def test_the_gate_gives_the_policys_reason():
    runtime = _Runtime({"example.org": "user"}, refuse="verify your phone first: !verify")
    with pytest.raises(Denied, match="the drive is not allowed: verify your phone first"):
        await require_permitted(_Plugin(runtime), "@kim:example.org")
