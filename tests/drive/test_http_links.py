"""Links to files shared into a room (files too large for the homeserver) follow the
file's and the share's current state: trashed, restored, the sharer's access revoked;
and restoring over HTTP shares no more than !drive restore does."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from urllib.parse import quote

import aiohttp
import pytest

from .media import mp3
from .people import Api, sha

pytestmark = pytest.mark.e2e

LARGE = 5 * 1024 * 1024  # over the test homeserver's 4 MB upload limit


@pytest.fixture
def api(drive_stack):
    return lambda person: Api(drive_stack, person)


async def fetch(link: str, person) -> tuple[int, dict | bytes]:
    headers = {"Authorization": f"Bearer {person.token}"}
    async with aiohttp.ClientSession() as http, http.get(link, headers=headers) as resp:
        body = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, body


async def shared_link(sharer, folder_room: str, name: str, reader) -> str:
    """``sharer`` shares ``name`` from the folder into a new chat with ``reader``."""
    chat = await sharer.user.create_room([sharer.bot, reader.id])
    await reader.join(chat)
    await sharer.user.wait_joined(chat, sharer.bot)
    await sharer.ask(folder_room, f"!drive share {name} {chat}", "posted a link to it")
    notice = await reader.user.wait_for_notice(chat, reader.bot, "larger than this homeserver")
    return notice["content"]["body"].rsplit(" ", 1)[-1]


async def folder_room(a: Api, fid: str) -> str:
    _, _, folders = await a.json("GET", "/folders")
    return next(f["room_id"] for f in folders["folders"] if f["id"] == fid)


async def test_a_link_stops_working_while_its_file_is_in_the_trash(person, api):
    alice, bob = await person(), await person()
    a = api(alice)
    fid = await a.folder("Linked")
    data = os.urandom(LARGE)
    await a.call("PUT", f"/folders/{fid}/files/sub/huge.bin", data=data)  # no sub/ yet
    await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "sub"})
    status, _, node = await a.json("PUT", f"/folders/{fid}/files/sub/huge.bin", data=data)
    assert status == 201
    room = await folder_room(a, fid)
    await alice.join(await alice.wait_invite())
    link = await shared_link(alice, room, "sub/huge.bin", bob)
    status, got = await fetch(link, bob)
    assert status == 200 and sha(got) == sha(data)

    _, _, trashed = await a.json("DELETE", f"/folders/{fid}/files/sub/huge.bin")
    status, body = await fetch(link, bob)
    assert status == 410 and body["errcode"] == "DRIVE_LINK_GONE"
    assert "huge.bin is in the trash" in body["error"]

    await a.json("POST", f"/folders/{fid}/restore", json={"node_id": trashed["id"]})
    status, got = await fetch(link, bob)
    assert status == 200 and sha(got) == sha(data)

    _, _, sub = await a.json("DELETE", f"/folders/{fid}/files/sub")  # the folder above it
    status, body = await fetch(link, bob)
    assert status == 410 and "its folder sub is" in body["error"]
    status, _, body = await a.json("GET", f"/nodes/{node['id']}/content")  # by id too
    assert status == 404 and "its folder sub is" in body["error"]
    await a.json("POST", f"/folders/{fid}/restore", json={"node_id": sub["id"]})
    status, _ = await fetch(link, bob)
    assert status == 200


async def test_a_link_stops_working_once_the_sharers_access_is_revoked(person, api):
    alice, bob, carol = await person(), await person(), await person()
    a, b = api(alice), api(bob)
    fid = await a.folder("Team")
    data = os.urandom(LARGE)
    status, _, _ = await a.call("PUT", f"/folders/{fid}/files/huge.bin", data=data)
    assert status == 201
    await a.json("POST", f"/folders/{fid}/members", json={"user_id": bob.id, "role": "viewer"})
    status, _, _ = await b.json("POST", f"/folders/{fid}/accept")
    assert status == 200
    room = await folder_room(a, fid)
    link = await shared_link(bob, room, "huge.bin", carol)
    status, got = await fetch(link, carol)
    assert status == 200 and sha(got) == sha(data)

    status, _, _ = await a.json("DELETE", f"/folders/{fid}/members/{quote(bob.id)}")
    assert status == 200
    status, body = await fetch(link, carol)
    assert status == 410 and body["errcode"] == "DRIVE_LINK_GONE"
    assert f"{bob.id}, who shared this link, no longer has access" in body["error"]

    # A link whose sharer was altered does not pass for someone else's.
    forged = link.replace(quote(bob.id, safe=""), quote(alice.id, safe=""))
    assert forged != link
    status, body = await fetch(forged, carol)
    assert status == 404 and body["error"] == "this link is not valid"


async def test_a_link_of_the_old_form_is_refused_with_what_to_do(person, drive_stack):
    alice = await person()
    url = f"{drive_stack.bridge.url}/_anywhere/drive/v1/shared/%21room%3Alocalhost/n/1/abcdef"
    status, body = await fetch(url, alice)
    assert status == 410 and "shared again" in body["error"]


async def test_restoring_audio_over_http_into_a_shared_folder_is_refused(person, api, drive_stack):
    """The HTTP restore applies the copyright rule as !drive restore does. The folder is
    shared the way shares made before the folder check were: a member row written
    straight into the bridge's database."""
    alice, bob = await person(), await person()
    a = api(alice)
    fid = await a.folder("Music")
    await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "old"})
    status, _, _ = await a.call("PUT", f"/folders/{fid}/files/old/song.bin", data=mp3())
    assert status == 201  # not shared yet: allowed
    _, _, trashed = await a.json("DELETE", f"/folders/{fid}/files/old")
    database = drive_stack.workdir / "bridge" / "data" / "anywhere.db"
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        db.execute(
            "INSERT INTO drive_member (folder_id, user_id, role, state, invited_by, updated_at) "
            "VALUES (?, ?, 'viewer', 'joined', ?, 0)",
            (fid, bob.id, alice.id),
        )
    restore = {"node_id": trashed["id"]}
    status, _, body = await a.json("POST", f"/folders/{fid}/restore", json=restore)
    assert status == 403 and body["errcode"] == "DRIVE_CONTENT_REFUSED", body
    assert "old/song.bin (in the trash) is refused" in body["error"]
    _, _, trash = await a.json("GET", f"/folders/{fid}/trash")
    assert [t["path"] for t in trash["trash"]] == ["old"]
