"""A real Prosody and a real Synapse with the bridge, for the XMPP tests."""

from __future__ import annotations

import shutil

import pytest
import pytest_asyncio

from anywhere.bridge.testing.stack import Stack
from anywhere.plugins.groups.xmpp.testing import INSTALL_HINT, Prosody, XmppPerson

XMPP_PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    if shutil.which("prosody") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = Prosody(tmp_path_factory.mktemp("prosody"))
    for name in XMPP_PEOPLE:
        server.add_user(name, f"{name}-password")
    server.start()
    try:
        yield server
    finally:
        server.stop()


ROOM_POST_RULES = """
- type: require_verified
  id: verified-posts
  actions: [room.post]
  methods: [code]
  scope: {users: ["@unverified*"]}
"""


REFUSED_PERSON = "@refused1:localhost"  # bridge.permissions: none


def make_xmpp_stack(
    workdir, prosody, database_url: str | None = None, limits: dict | None = None
) -> Stack:
    """The bridge with basics, policy and groups, its XMPP component on ``prosody``;
    ``limits``: plugins.settings.groups.limits."""
    (workdir / "rules.yaml").write_text(ROOM_POST_RULES)
    settings = {
        "policy": {"rules_file": str(workdir / "rules.yaml")},
        "groups": {
            # the test's upload service is on loopback, which a deployment never allows
            "fetch_private_addresses": True,
            "xmpp": {
                "enabled": True,
                "component_jid": prosody.component,
                "secret": prosody.secret,
                "port": prosody.component_port,
                "reconnect_max_delay": 2,
                "upload_jid": prosody.upload,
                # written without the trailing /: the bridge must still compare host
                # and port, not text (test_e2e_xmpp.py tries http://HOST:PORT@other/)
                "file_url_prefixes": [f"http://127.0.0.1:{prosody.http_port}"],
            },
        },
    }
    if limits:
        settings["groups"]["limits"] = limits
    extra: dict = {"bridge": {"permissions": {"localhost": "user", REFUSED_PERSON: "none"}}}
    if database_url:
        extra["database"] = {"url": database_url}
    return Stack(workdir, ["basics", "policy", "groups"], settings, extra)


@pytest.fixture(scope="module")
def xmpp_stack(tmp_path_factory, prosody):
    stack = make_xmpp_stack(tmp_path_factory.mktemp("xmpp_bridge"), prosody)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture
async def xmpp_person(prosody):
    made = []

    async def make(name):
        person = XmppPerson(f"{name}@{prosody.domain}", f"{name}-password", prosody.c2s_port)
        await person.connect()
        made.append(person)
        return person

    yield make
    for person in made:
        await person.close()


@pytest_asyncio.fixture
async def matrix_person(xmpp_stack):
    made = []

    async def make(localpart, displayname=None):
        user = await xmpp_stack.user(localpart)
        if displayname:
            await user.client.set_displayname(displayname)
        made.append(user)
        return user

    yield make
    for user in made:
        await user.close()
