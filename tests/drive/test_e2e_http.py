"""The drive's HTTP API end to end: Matrix tokens, invitations, streamed uploads,
Range downloads, If-Match, the change feed, cut-off uploads and a SIGKILL mid-upload."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote, urlsplit

import aiohttp
import pytest

from .people import PREFIX, Api, sha

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(drive_stack):
    return lambda person: Api(drive_stack, person)


async def test_http_needs_a_matrix_token_and_serves_its_openapi_document(drive_stack):
    async with aiohttp.ClientSession() as http:
        async with http.get(drive_stack.bridge.url + PREFIX + "/folders") as resp:
            assert resp.status == 401
        async with http.get(
            drive_stack.bridge.url + PREFIX + "/folders", headers={"Authorization": "Bearer no"}
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"
        # the document needs no token (it holds nothing secret: test_http_routes.py)
        async with http.get(drive_stack.bridge.url + PREFIX + "/openapi.json") as resp:
            status, doc = resp.status, await resp.json()
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/folders/{folder}/files/{path}", "/folders/{folder}/changes"} <= set(doc["paths"])


async def test_invite_accept_decline_over_http(person, api):
    alice, bob, carol = await person(), await person(), await person()
    a, b, c = api(alice), api(bob), api(carol)
    fid = await a.folder("Shared")
    status, _, _ = await a.call("PUT", f"/folders/{fid}/files/a.txt", data=b"hello")
    assert status == 201
    for who in (bob, carol):
        status, _, body = await a.json(
            "POST", f"/folders/{fid}/members", json={"user_id": who.id, "role": "viewer"}
        )
        assert status == 200 and body["state"] == "invited"
    status, _, body = await b.json("GET", f"/folders/{fid}/list")
    assert status == 403 and "not accepted yet" in body["error"]
    status, _, body = await b.json("POST", f"/folders/{fid}/accept")
    assert (status, body["state"]) == (200, "joined")
    status, _, body = await b.json("GET", f"/folders/{fid}/list")
    assert status == 200 and [e["name"] for e in body["entries"]] == ["a.txt"]
    status, _, body = await b.json("PUT", f"/folders/{fid}/files/b.txt", data=b"nope")
    assert status == 403 and "viewer" in body["error"]
    status, _, body = await c.json("POST", f"/folders/{fid}/decline")
    assert (status, body["state"]) == (200, "declined")
    status, _, _ = await c.json("GET", f"/folders/{fid}/list")
    assert status == 403
    status, _, body = await a.json("DELETE", f"/folders/{fid}/members/{quote(bob.id)}")
    assert status == 200
    status, _, _ = await b.json("GET", f"/folders/{fid}/list")
    assert status == 403


async def test_streamed_upload_and_range_download(person, api):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Data")
    data = os.urandom(3_000_000)

    async def stream():
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    status, headers, body = await a.json(
        "PUT", f"/folders/{fid}/files/raw/blob.bin", data=stream(), headers={}
    )
    assert status == 404  # the folder raw/ does not exist yet
    await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "raw"})
    status, headers, body = await a.json("PUT", f"/folders/{fid}/files/raw/blob.bin", data=stream())
    assert status == 201 and body["sha256"] == sha(data) and body["size"] == len(data)
    assert headers["ETag"] == f'"{body["revision"]}"'
    status, headers, got = await a.call("GET", f"/folders/{fid}/files/raw/blob.bin")
    assert status == 200 and sha(got) == sha(data)
    status, headers, got = await a.call(
        "GET", f"/folders/{fid}/files/raw/blob.bin", headers={"Range": "bytes=1000-1999"}
    )
    assert status == 206 and got == data[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    status, _, got = await a.call(
        "GET", f"/folders/{fid}/files/raw/blob.bin", headers={"Range": "bytes=-10"}
    )
    assert status == 206 and got == data[-10:]
    status, headers, _ = await a.call(
        "GET", f"/folders/{fid}/files/raw/blob.bin", headers={"Range": f"bytes={len(data)}-"}
    )
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"


async def test_writes_based_on_a_stale_revision_get_412_and_change_nothing(person, api):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Edits")
    _, _, first = await a.json("PUT", f"/folders/{fid}/files/doc.txt", data=b"one")
    rev = f'"{first["revision"]}"'
    status, _, second = await a.json(
        "PUT", f"/folders/{fid}/files/doc.txt", data=b"two", headers={"If-Match": rev}
    )
    assert status == 201 and second["version"] == 2
    status, _, body = await a.json(
        "PUT", f"/folders/{fid}/files/doc.txt", data=b"three", headers={"If-Match": rev}
    )
    assert status == 412 and body["errcode"] == "DRIVE_STALE_REVISION"
    status, _, _ = await a.json(
        "PUT", f"/folders/{fid}/files/doc.txt", data=b"four", headers={"If-None-Match": "*"}
    )
    assert status == 412
    status, _, _ = await a.json(
        "DELETE", f"/folders/{fid}/files/doc.txt", headers={"If-Match": rev}
    )
    assert status == 412
    status, _, _ = await a.json(
        "POST",
        f"/folders/{fid}/move",
        json={"from": "doc.txt", "to": "x.txt"},
        headers={"If-Match": rev},
    )
    assert status == 412
    _, _, got = await a.call("GET", f"/folders/{fid}/files/doc.txt")
    assert got == b"two"
    _, _, versions = await a.json("GET", f"/folders/{fid}/versions?path=doc.txt")
    assert [v["version"] for v in versions["versions"]] == [2, 1]


async def test_the_change_feed_gives_what_changed_since_a_cursor(person, api):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Feed")
    _, _, tree = await a.json("GET", f"/folders/{fid}/tree")
    cursor = tree["cursor"]
    await a.call("PUT", f"/folders/{fid}/files/a.txt", data=b"a")
    await a.call("PUT", f"/folders/{fid}/files/b.txt", data=b"b")
    _, _, feed = await a.json("GET", f"/folders/{fid}/changes?since={cursor}")
    assert [c["path"] for c in feed["changes"]] == ["a.txt", "b.txt"]
    cursor = feed["cursor"]
    _, _, feed = await a.json("GET", f"/folders/{fid}/changes?since={cursor}")
    assert feed == {"cursor": cursor, "changes": []}
    await a.call("DELETE", f"/folders/{fid}/files/a.txt")
    _, _, feed = await a.json("GET", f"/folders/{fid}/changes?since={cursor}")
    assert [(c["path"], "trashed_at" in c) for c in feed["changes"]] == [("a.txt", True)]


async def _cut_off_upload(stack, token: str, fid: str, name: str, total: int, sent: int):
    """Start a PUT announcing ``total`` bytes, send ``sent`` of them, and hang up."""
    url = urlsplit(stack.bridge.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PUT {PREFIX}/folders/{fid}/files/{name} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {total}\r\n\r\n"
        ).encode()
    )
    writer.write(os.urandom(sent))
    await writer.drain()
    return writer


def _partial_files(stack) -> set[str]:
    """The content being written: the store's tmp/<random>.part files."""
    tmp = stack.drive_root / "tmp"
    return set(os.listdir(tmp)) if tmp.exists() else set()


async def _storing_started(stack, before: set[str]) -> None:
    """Wait until the bridge has started storing an upload: a temporary file that was
    not there ``before`` appears in the store's tmp/ folder."""
    for _ in range(300):
        if _partial_files(stack) - before:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the upload never started: no new file in the store's tmp/ folder")


async def _nothing_kept(a: Api, fid: str, stack, name: str) -> None:
    _, _, listing = await a.json("GET", f"/folders/{fid}/list")
    assert name not in [e["name"] for e in listing["entries"]]
    _, _, quota = await a.json("GET", "/quota")
    assert quota["used"] == 0
    for _ in range(50):
        if not _partial_files(stack):
            break
        await asyncio.sleep(0.1)
    assert _partial_files(stack) == set()


async def test_an_upload_cut_off_half_way_leaves_nothing(person, api, drive_stack):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Cut")
    before = _partial_files(drive_stack)
    writer = await _cut_off_upload(drive_stack, alice.token, fid, "half.bin", 2_000_000, 1_000_000)
    await _storing_started(drive_stack, before)  # cut off while the server is storing it
    writer.close()
    await _nothing_kept(a, fid, drive_stack, "half.bin")


async def test_sigkill_during_an_upload_leaves_nothing_partial(person, api, drive_stack):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Killed")
    before = _partial_files(drive_stack)
    writer = await _cut_off_upload(drive_stack, alice.token, fid, "big.bin", 4_000_000, 2_000_000)
    await _storing_started(drive_stack, before)
    drive_stack.bridge.kill()
    writer.close()
    await asyncio.to_thread(drive_stack.bridge.start)
    await _nothing_kept(a, fid, drive_stack, "big.bin")


async def test_a_file_too_large_for_the_homeserver_is_shared_as_a_link(person, api):
    alice, bob = await person(), await person()
    a = api(alice)
    fid = await a.folder("Video-free")
    data = os.urandom(5 * 1024 * 1024)  # over the test homeserver's 4 MB upload limit
    status, _, _ = await a.call("PUT", f"/folders/{fid}/files/huge.bin", data=data)
    assert status == 201
    _, _, folders = await a.json("GET", "/folders")
    room = next(f["room_id"] for f in folders["folders"] if f["id"] == fid)
    await alice.join(await alice.wait_invite())
    chat = await alice.user.create_room([alice.bot, bob.id])
    await bob.join(chat)
    await alice.user.wait_joined(chat, alice.bot)
    await alice.ask(room, f"!drive share huge.bin {chat}", "posted a link to it")
    notice = await bob.user.wait_for_notice(chat, bob.bot, "larger than this homeserver accepts")
    link = notice["content"]["body"].rsplit(" ", 1)[-1]
    async with aiohttp.ClientSession() as http:
        async with http.get(link, headers={"Authorization": f"Bearer {bob.token}"}) as resp:
            assert resp.status == 200 and sha(await resp.read()) == sha(data)
        async with http.get(link) as resp:
            assert resp.status == 401
    outsider = await person()
    async with (
        aiohttp.ClientSession() as http,
        http.get(link, headers={"Authorization": f"Bearer {outsider.token}"}) as resp,
    ):
        assert resp.status == 403


async def test_trash_restore_versions_and_revert_over_http(person, api):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Kept")
    await a.call("PUT", f"/folders/{fid}/files/notes.txt", data=b"first")
    await a.call("PUT", f"/folders/{fid}/files/notes.txt", data=b"second")
    status, _, node = await a.json(
        "POST", f"/folders/{fid}/revert", json={"path": "notes.txt", "version": 1}
    )
    assert (status, node["version"]) == (200, 3)
    _, _, got = await a.call("GET", f"/folders/{fid}/files/notes.txt")
    assert got == b"first"
    status, _, trashed = await a.json("DELETE", f"/folders/{fid}/files/notes.txt")
    assert status == 200 and "trashed_at" in trashed
    status, _, _ = await a.call("GET", f"/folders/{fid}/files/notes.txt")
    assert status == 404
    _, _, trash = await a.json("GET", f"/folders/{fid}/trash")
    assert [t["path"] for t in trash["trash"]] == ["notes.txt"]
    status, _, restored = await a.json(
        "POST", f"/folders/{fid}/restore", json={"node_id": trash["trash"][0]["id"]}
    )
    assert (status, restored["path"]) == (200, "notes.txt")
    _, _, quota = await a.json("GET", "/quota")
    assert quota["used"] == len(b"first") * 2 + len(b"second")  # every version counts
    # emptied for good: the quota comes back, the feed says it is gone
    cursor = (await a.json("GET", f"/folders/{fid}/tree"))[2]["cursor"]
    await a.json("DELETE", f"/folders/{fid}/files/notes.txt")
    status, _, emptied = await a.json("DELETE", f"/folders/{fid}/trash")
    assert (status, emptied) == (200, {"purged": 1, "freed_bytes": quota["used"]})
    assert (await a.json("GET", "/quota"))[2]["used"] == 0
    _, _, feed = await a.json("GET", f"/folders/{fid}/changes?since={cursor}")
    assert [(c["id"], c.get("purged")) for c in feed["changes"]] == [(restored["id"], True)]
    status, _, body = await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "a/../b"})
    assert status == 400 and "stay inside" in body["error"]
    status, _, body = await a.json("PUT", f"/folders/{fid}/files/CON.txt", data=b"x")
    assert status == 400 and "reserved device name" in body["error"]
