"""The links the bot gives (files too large for the homeserver) start with ``public_url``:
https:// when it is https, path prefix (a reverse proxy's) and all, and lead to the file."""

from __future__ import annotations

import os
from collections.abc import Iterator

import aiohttp
import pytest

from anywhere.bridge.testing.stack import Stack

from .conftest import E2E_QUOTA, E2E_UPLOAD_LIMIT
from .people import Api, DrivePerson, sha

pytestmark = pytest.mark.e2e
PUBLIC_URL = "https://drive.example.test/anywhere"


@pytest.fixture(scope="module")
def https_drive_stack(tmp_path_factory) -> Iterator[Stack]:
    """A drive whose web server people reach at an https:// address (a TLS proxy)."""
    workdir = tmp_path_factory.mktemp("drive-https")
    stack = Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={
            "drive": {
                "storage_url": f"osfs://{workdir / 'drive-store'}",
                "quota_bytes": E2E_QUOTA,
                "public_url": PUBLIC_URL + "/",
            }
        },
        synapse_extra={"max_upload_size": E2E_UPLOAD_LIMIT},
    )
    with stack:
        yield stack


async def test_a_link_the_bot_gives_is_https_when_public_url_is(https_drive_stack):
    stack = https_drive_stack
    alice = DrivePerson(await stack.user(), stack)
    bob = DrivePerson(await stack.user(), stack)
    try:
        room = await alice.new_folder("Big")
        data = os.urandom(E2E_UPLOAD_LIMIT + 100_000)  # more than the homeserver takes
        a = Api(stack, alice)
        _, _, folders = await a.json("GET", "/folders")
        fid = next(f["id"] for f in folders["folders"] if f["room_id"] == room)
        status, _, _ = await a.call("PUT", f"/folders/{fid}/files/huge.bin", data=data)
        assert status == 201
        chat = await alice.user.create_room([alice.bot, bob.id])
        await bob.join(chat)
        await alice.user.wait_joined(chat, alice.bot)
        await alice.ask(room, f"!drive share huge.bin {chat}", "posted a link to it")
        notice = await bob.user.wait_for_notice(chat, bob.bot, "download it from the drive")
        link = notice["content"]["body"].rsplit(" ", 1)[-1]
        assert link.startswith(f"{PUBLIC_URL}/_anywhere/drive/v1/shared/"), link
        # what the proxy would pass on: the same path on the bridge's own web server
        direct = stack.bridge.url + link.removeprefix(PUBLIC_URL)
        async with (
            aiohttp.ClientSession() as http,
            http.get(direct, headers={"Authorization": f"Bearer {bob.token}"}) as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert sha(await resp.read()) == sha(data)
    finally:
        await alice.close()
        await bob.close()
