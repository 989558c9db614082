"""What the drive's web app adds to the bridge, end to end without a browser: its page
and headers, resumable uploads (cut off half way, the bridge killed, resumed from the
last stored byte), sharing a file into a room over HTTP, the folder room's "Files"
widget, and OpenID tokens exchanged for drive sessions (forged, foreign and expired ones
refused)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
import yaml

from anywhere.bridge.api import BadSignature
from anywhere.plugins.drive.webapp.sessions import DriveSessions

from .media import mp3
from .people import PREFIX, Api, sha

pytestmark = pytest.mark.e2e

APP = "/_anywhere/drive/app/"


@pytest.fixture
def api(drive_stack):
    return lambda person: Api(drive_stack, person)


async def test_the_page_is_served_with_a_policy_that_forbids_inline_and_foreign_scripts(
    drive_stack,
):
    async with aiohttp.ClientSession() as http:
        async with http.get(drive_stack.bridge.url + APP) as resp:
            page = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
            assert resp.status == 200 and resp.content_type == "text/html"
        async with http.get(drive_stack.bridge.url + APP + "app.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
        async with http.get(drive_stack.bridge.url + APP + "secrets.yaml") as resp:
            assert resp.status == 404
    assert '<script type="module" src="app.js"></script>' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing from another origin
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'self'"  # no Element origin configured here


async def _openid_token(person) -> dict:
    url = (
        f"{person.stack.synapse.url}/_matrix/client/v3/user/{quote(person.id)}/openid/request_token"
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json={}, headers={"Authorization": f"Bearer {person.token}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _exchange(stack, body: dict) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.bridge.url + APP + "session", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def test_an_openid_token_becomes_a_drive_session_and_forged_or_foreign_ones_do_not(
    person, api, drive_stack
):
    alice = await person()
    fid = await api(alice).folder("Widget")
    token = await _openid_token(alice)
    status, body = await _exchange(drive_stack, token)
    assert status == 200, body
    assert body["user_id"] == alice.id and body["session"].startswith("drive-session.")
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {body['session']}"}
        async with http.get(drive_stack.bridge.url + PREFIX + "/folders", headers=headers) as r:
            assert r.status == 200
            assert [f["id"] for f in (await r.json())["folders"]] == [fid]
        # an OpenID token any approved widget can get must not lead to lasting access
        async with http.post(
            drive_stack.bridge.url + PREFIX + "/app-passwords", json={"name": "w"}, headers=headers
        ) as r:
            assert r.status == 403 and "Matrix sign-in" in (await r.json())["error"]
        async with http.get(
            drive_stack.bridge.url + PREFIX + "/app-passwords", headers=headers
        ) as r:
            assert r.status == 403
        tampered = {"Authorization": f"Bearer {body['session'][:-2]}xx"}
        async with http.get(drive_stack.bridge.url + PREFIX + "/folders", headers=tampered) as r:
            assert r.status == 401 and "not valid" in (await r.json())["error"]

    forged = {**token, "access_token": "forged" + token["access_token"]}
    status, body = await _exchange(drive_stack, forged)
    assert status == 401 and "forged or has expired" in body["error"]
    foreign = {**token, "matrix_server_name": "elsewhere.example"}
    status, body = await _exchange(drive_stack, foreign)
    assert status == 403 and "from elsewhere.example" in body["error"]
    status, body = await _exchange(drive_stack, {"access_token": "x"})
    assert status == 400 and "matrix_server_name" in body["error"]


class _Signer:
    """The bridge's signer for the pure session logic (sign = mark, unsign = check)."""

    def sign(self, value, purpose):
        import json

        return f"{purpose}:{json.dumps(value)}"

    def unsign(self, token, purpose):
        import json

        if not token.startswith(f"{purpose}:"):
            raise BadSignature("no")
        return json.loads(token.removeprefix(f"{purpose}:"))


def test_a_drive_session_ends_after_its_time():
    now = [1000.0]
    sessions = DriveSessions(_Signer(), clock=lambda: now[0])
    token, expires = sessions.issue("@a:x", seconds=60)
    assert expires == 1060 and sessions.user_for(token) == "@a:x"
    now[0] = 1060.0
    with pytest.raises(Exception) as ended:
        sessions.user_for(token)
    assert ended.value.status == 401 and "has ended" in ended.value.text


def _data_dir(stack) -> Path:
    return Path(yaml.safe_load(stack.config_path.read_text("utf-8"))["data_dir"])


def _staged(stack, upload_id: str) -> Path:
    """The upload's one staging file (in the blob store's staging folder)."""
    meta = (_data_dir(stack) / "drive-uploads" / f"{upload_id}.json").read_text()
    return Path(yaml.safe_load(meta)["staged"])


async def _cut_off_piece(stack, token: str, upload_id: str, offset: int, data: bytes, sent: int):
    """PATCH a piece announcing ``len(data)`` bytes, send ``sent`` of them, and hang up
    once the bridge has written some of them into the piece's file (so the cut-off
    happens while it is receiving the piece)."""
    url = urlsplit(stack.bridge.url)
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PATCH {PREFIX}/uploads/{upload_id} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
    )
    writer.write(data[:sent])
    await writer.drain()
    staged = _staged(stack, upload_id)
    for _ in range(600):
        if staged.exists() and staged.stat().st_size:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the bridge never started writing the piece")
    writer.close()
    await writer.wait_closed()


async def _kept_after_cut_off(a: Api, upload_id: str) -> dict:
    """What the bridge kept once the cut-off piece has ended (asking waits for pieces
    being received to end)."""
    status, _, body = await a.json("GET", f"/uploads/{upload_id}")
    assert status == 200 and body["kept"], body
    return body


async def test_a_resumable_upload_cut_off_half_way_goes_on_from_the_last_stored_byte(
    person, api, drive_stack
):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Resumed")
    data = os.urandom(3_000_000)
    status, _, session = await a.json(
        "POST", f"/folders/{fid}/uploads", json={"path": "big/part.bin", "size": len(data)}
    )
    assert status == 404 and "big" in session["error"]  # no such folder yet: said at once
    await a.json("POST", f"/folders/{fid}/mkdir", json={"path": "big"})
    status, _, session = await a.json(
        "POST", f"/folders/{fid}/uploads", json={"path": "big/part.bin", "size": len(data)}
    )
    assert status == 201 and session["offset"] == 0
    upload = session["id"]
    # The first piece is cut off half way: what arrived is kept ...
    await _cut_off_piece(drive_stack, alice.token, upload, 0, data, 1_500_000)
    kept = (await _kept_after_cut_off(a, upload))["offset"]
    assert 0 < kept <= 1_500_000
    # ... durably: the bridge is killed and started again.
    drive_stack.bridge.kill()
    await asyncio.to_thread(drive_stack.bridge.start)
    _, _, state = await a.json("GET", f"/uploads/{upload}")
    assert state["offset"] == kept and state["path"] == "big/part.bin"
    _, _, listing = await a.json("GET", f"/folders/{fid}/list?path=big")
    assert listing["entries"] == []  # nothing visible until the last byte
    # A piece that does not start at the kept offset is refused, saying where to go on.
    status, headers, body = await a.json(
        "PATCH", f"/uploads/{upload}", data=data[:10], headers={"Upload-Offset": "0"}
    )
    assert status == 409 and headers["Upload-Offset"] == str(kept)
    assert f"Upload-Offset: {kept}" in body["error"]
    status, _, done = await a.json(
        "PATCH", f"/uploads/{upload}", data=data[kept:], headers={"Upload-Offset": str(kept)}
    )
    assert status == 200 and done["done"] and done["node"]["size"] == len(data)
    assert done["node"]["sha256"] == sha(data)  # hashed again after the restart, in order
    status, _, content = await a.call("GET", f"/folders/{fid}/files/big/part.bin")
    assert status == 200 and sha(content) == sha(data)
    status, _, _ = await a.json("GET", f"/uploads/{upload}")
    assert status == 404  # ended: nothing left behind
    # Another person cannot see or continue someone's upload.
    bob = await person()
    _, _, other = await a.json("POST", f"/folders/{fid}/uploads", json={"path": "x", "size": 5})
    status, _, _ = await api(bob).json("GET", f"/uploads/{other['id']}")
    assert status == 404


async def test_resumable_pieces_arrive_at_once_in_any_order_and_a_cut_one_is_continued(
    person, api, drive_stack
):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Lanes")
    data = os.urandom(4_000_000)
    _, _, session = await a.json(
        "POST", f"/folders/{fid}/uploads", json={"path": "lanes.bin", "size": len(data)}
    )
    upload = session["id"]
    staged = _staged(drive_stack, upload)
    assert staged.parent.name == "staging"  # inside the drive's storage, to be renamed
    # The last half first, cut off part way (past the bridge's 1 MiB write buffer): kept,
    # ahead of what is missing.
    await _cut_off_piece(drive_stack, alice.token, upload, 2_000_000, data[2_000_000:], 1_500_000)
    state = await _kept_after_cut_off(a, upload)
    (kept_start, kept_end), *_ = state["kept"]
    assert state["offset"] == 0 and kept_start == 2_000_000 and kept_end <= 3_500_000
    # A piece over what is kept is refused, naming the first missing byte.
    status, headers, body = await a.json(
        "PATCH", f"/uploads/{upload}", data=data[1_900_000:2_100_000],
        headers={"Upload-Offset": "1900000"},
    )  # fmt: skip
    assert status == 409 and headers["Upload-Offset"] == "0" and "2000000" in body["error"]

    async def piece(start: int, end: int):
        return await a.json(
            "PATCH", f"/uploads/{upload}", data=data[start:end],
            headers={"Upload-Offset": str(start)},
        )  # fmt: skip

    # The rest of the cut piece and the first half in two pieces, at the same time.
    answers = await asyncio.gather(
        piece(kept_end, len(data)), piece(1_000_000, 2_000_000), piece(0, 1_000_000)
    )
    assert all(status == 200 for status, _, _ in answers), answers
    assert any(body.get("done") for _, _, body in answers), answers
    node = next(body["node"] for _, _, body in answers if body.get("done"))
    assert node["sha256"] == sha(data)  # hashed in order, whatever order the pieces came in
    status, _, content = await a.call("GET", f"/folders/{fid}/files/lanes.bin")
    assert status == 200 and sha(content) == sha(data)
    assert not list((_data_dir(drive_stack) / "drive-uploads").glob(f"{upload}.*"))
    assert not staged.exists()  # the staging file became the content: nothing left


async def test_a_resumable_upload_over_quota_is_refused_before_any_byte(person, api):
    alice = await person()
    a = api(alice)
    fid = await a.folder("Full")
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/uploads", json={"path": "huge.bin", "size": 10**12}
    )
    assert status == 507 and "does not fit" in body["error"]


async def test_a_file_is_shared_into_a_room_over_http_and_an_mp3_is_refused_with_its_reason(
    person, api
):
    alice, bob = await person(), await person()
    a = api(alice)
    fid = await a.folder("ToShare")
    await a.call("PUT", f"/folders/{fid}/files/plan.txt", data=b"the plan")
    await a.call("PUT", f"/folders/{fid}/files/song.mp3", data=mp3())
    chat = await alice.user.create_room([alice.bot, bob.id])
    await bob.join(chat)
    await alice.user.wait_joined(chat, alice.bot)
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/share", json={"path": "plan.txt", "room": chat}
    )
    assert status == 200 and body["posted"] == "file", body
    posted = await bob.wait_file(chat, "plan.txt")
    assert await bob.download(posted["content"]["url"]) == b"the plan"
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/share", json={"path": "song.mp3", "room": chat}
    )
    assert status == 403 and body["errcode"] == "DRIVE_CONTENT_REFUSED"
    assert "audio" in body["error"] and "copyright" in body["error"]
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/share", json={"path": "plan.txt", "room": "general"}
    )
    assert status == 400 and "#alias:server" in body["error"]
    stranger_room = await bob.user.create_room([])
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/share", json={"path": "plan.txt", "room": stranger_room}
    )
    assert status == 403 and "bot is not in" in body["error"]


async def test_a_folder_room_has_a_files_widget_and_the_page_s_address_in_its_topic(
    person, drive_stack
):
    alice = await person()
    room = await alice.new_folder("Widgets")
    client = alice.user.client
    widget = await client.room_get_state_event(
        room, "im.vector.modular.widgets", "anywhere_drive_files"
    )
    content = widget.content
    assert content["type"] == "m.custom" and content["name"] == "Files"
    assert content["url"].startswith(drive_stack.bridge.url + APP + "?widget=1")
    assert "$matrix_room_id" in content["url"]
    topic = await client.room_get_state_event(room, "m.room.topic")
    assert drive_stack.bridge.url + APP in topic.content["topic"]  # Element X: no widgets


@pytest.mark.parametrize(
    "origin",
    ["https://x; script-src *", "https://x 'unsafe-inline'", "https://x/path", "javascript:x"],
)
def test_a_frame_ancestor_that_is_not_a_bare_origin_is_refused(origin):
    """webapp_frame_ancestors goes into the page's Content-Security-Policy: anything but an
    origin would add directives of its own."""
    from anywhere.bridge.errors import ConfigError
    from anywhere.plugins.drive.settings import CONFIG_SECTION

    section = {**CONFIG_SECTION.defaults, "webapp_frame_ancestors": [origin]}
    with pytest.raises(ConfigError, match="webapp_frame_ancestors"):
        CONFIG_SECTION.validate(section, "plugins.settings.drive")
    CONFIG_SECTION.validate(
        {**section, "webapp_frame_ancestors": ["https://app.element.io", "http://127.0.0.1:8080"]},
        "plugins.settings.drive",
    )
