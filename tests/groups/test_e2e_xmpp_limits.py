"""The limits on what one XMPP account can make the bridge create, with a real Prosody
and a real Synapse (plugins.settings.groups.limits set low)."""

from __future__ import annotations

import time

import pytest

from .conftest import make_xmpp_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def xmpp_stack(tmp_path_factory, prosody):
    limits = {"direct_chats_per_address": 2}
    stack = make_xmpp_stack(tmp_path_factory.mktemp("xmpp_limits"), prosody, limits=limits)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_one_xmpp_account_opens_no_more_direct_chats_than_the_limit(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    frank = await xmpp_person("frank")
    people = [await matrix_person(f"lim{n}") for n in (1, 2, 3)]
    for person in people[:2]:
        frank.send(f"{person.user_id[1:].replace(':', '=3a')}@{prosody.component}", "hi", "chat")
    for person in people[:2]:
        deadline = time.monotonic() + 30
        while not person.invites:
            assert time.monotonic() < deadline, f"{person.user_id} got no invite"
            await person.sync_once()
    mark = frank.mark()
    third = f"lim3=3alocalhost@{prosody.component}"
    frank.send(third, "hi", "chat")
    error = await frank.wait_for(
        lambda m: m["type"] == "error" and m["from"].bare == third, start=mark
    )
    assert "limit of 2 direct chats per address" in error["error"]["text"]
    assert "direct_chats_per_address" in error["error"]["text"]
    await people[2].sync_once()
    assert not people[2].invites
