"""``/dav/`` keeps the drive's rules, end to end against a real Synapse and bridge: app
passwords (Basic auth, revocation, shown once, only in a direct chat), acceptance, a
viewer's PUT (403), a quota overflow (507), an mp3 in a shared folder (403 with the
reason), overwrites as new versions, DELETE into the trash, and locks and dead
properties that survive a restart of the bridge."""

from __future__ import annotations

import base64
import os
import re

import aiohttp
import pytest

from anywhere.bridge.testing.stack import Stack

from .conftest import E2E_QUOTA
from .media import mp3
from .people import Api, DrivePerson
from .webdav_client import Dav

pytestmark = pytest.mark.e2e

PROP = (
    '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:x-test">'
    "<D:set><D:prop><z:colour>teal</z:colour></D:prop></D:set></D:propertyupdate>"
)
LOCKINFO = (
    '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
    "</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>laptop</D:owner></D:lockinfo>"
)


async def shared_folder(stack, owner, other, role: str, *, accept: bool = True) -> str:
    """A folder ``Team`` of ``owner`` shared with ``other`` as ``role``; returns its id."""
    a = Api(stack, owner)
    fid = await a.folder("Team")
    status, _, body = await a.json(
        "POST", f"/folders/{fid}/members", json={"user_id": other.id, "role": role}
    )
    assert status == 200, body
    if accept:
        status, _, body = await Api(stack, other).json("POST", f"/folders/{fid}/accept")
        assert status == 200, body
    return fid


async def test_basic_auth_with_an_app_password_and_its_revocation(drive_stack, person):
    alice = await person()
    dav = await Dav.of(drive_stack, alice)
    status, headers, _ = await dav.call(
        "PROPFIND", "/", headers={"Depth": "0", "Authorization": ""}
    )
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    wrong = {"Authorization": aiohttp.encode_basic_auth(dav.login, "anyw_wrong")}
    status, _, body = await dav.call("PROPFIND", "/", headers={"Depth": "0", **wrong})
    assert status == 401 and b"app password" in body
    # the full Matrix ID works too ("@alice:server:password": Basic splits at the first ':')
    raw = base64.b64encode(f"{alice.id}:{dav.password}".encode()).decode()
    status, _, _ = await dav.call(
        "PROPFIND", "/", headers={"Depth": "0", "Authorization": f"Basic {raw}"}
    )
    assert status == 207
    status, _, _ = await dav.call("PROPFIND", "/", headers={"Depth": "0"})
    assert status == 207
    listed = await alice.ask(None, "!drive apppassword list", "laptop")
    assert dav.password not in listed and "last used" in listed
    await alice.ask(None, "!drive apppassword revoke laptop", "Revoked")
    status, _, _ = await dav.call("PROPFIND", "/", headers={"Depth": "0"})
    assert status == 401


async def test_app_passwords_over_the_http_api_are_shown_once(drive_stack, person):
    alice = await person()
    api = Api(drive_stack, alice)
    status, _, body = await api.json("POST", "/app-passwords", json={"name": "rclone"})
    assert status == 201 and body["password"].startswith("anyw_")
    dav = Dav(drive_stack, alice, body["password"])
    status, _, _ = await dav.call("PROPFIND", "/", headers={"Depth": "0"})
    assert status == 207
    status, _, listed = await api.json("GET", "/app-passwords")
    assert [p["name"] for p in listed["app_passwords"]] == ["rclone"]
    assert body["password"] not in str(listed)
    status, _, again = await api.json("POST", "/app-passwords", json={"name": "rclone"})
    assert status == 409 and "already" in again["error"]
    status, _, _ = await api.call("DELETE", "/app-passwords/rclone")
    assert status == 204
    status, _, _ = await dav.call("PROPFIND", "/", headers={"Depth": "0"})
    assert status == 401


async def test_an_app_password_is_made_only_in_the_direct_chat(drive_stack, person):
    alice = await person()
    room = await alice.new_folder("Chatty")
    answer = await alice.ask(room, "!drive apppassword create here")
    assert "direct chat" in answer and "anyw_" not in answer


async def test_a_folder_is_served_only_once_accepted(drive_stack, person):
    alice, bob = await person(), await person()
    fid = await shared_folder(drive_stack, alice, bob, "editor", accept=False)
    name = "Team"
    dav = await Dav.of(drive_stack, bob)
    status, _, body = await dav.call("PROPFIND", "/", headers={"Depth": "1"})
    assert status == 207 and name.encode() not in body
    status, _, body = await dav.call("PUT", f"/{name}/x.txt", data=b"x")
    assert status == 403 and b"not accepted yet" in body
    status, _, _ = await Api(drive_stack, bob).call("POST", f"/folders/{fid}/accept")
    assert status == 200
    status, _, body = await dav.call("PROPFIND", "/", headers={"Depth": "1"})
    assert status == 207 and f"/dav/{name}/".encode() in body


async def test_mkcol_at_the_top_makes_a_shared_folder(drive_stack, person):
    alice = await person()
    dav = await Dav.of(drive_stack, alice)
    assert (await dav.call("MKCOL", "/Projects/"))[0] == 201
    assert (await dav.call("MKCOL", "/Projects/"))[0] == 405
    assert (await dav.call("PUT", "/Projects/plan.txt", data=b"plan"))[0] == 201
    listed = await alice.ask(None, "!drive ls Projects", "plan.txt")
    assert "Projects" in listed
    # a folder cannot be copied into itself
    status, _, _ = await dav.call(
        "COPY", "/Projects/", headers={"Destination": f"{dav.root}/Projects/again"}
    )
    assert status == 403


async def test_a_viewer_reads_but_a_put_is_403(drive_stack, person):
    alice, bob = await person(), await person()
    await shared_folder(drive_stack, alice, bob, "viewer")
    name = "Team"
    owner, viewer = await Dav.of(drive_stack, alice), await Dav.of(drive_stack, bob)
    status, _, _ = await owner.call("PUT", f"/{name}/plan.txt", data=b"the plan")
    assert status == 201
    status, _, body = await viewer.call("GET", f"/{name}/plan.txt")
    assert (status, body) == (200, b"the plan")
    writes = [("PUT", "plan.txt"), ("PUT", "new.txt"), ("DELETE", "plan.txt"), ("MKCOL", "sub"),
              ("PROPPATCH", "plan.txt"), ("LOCK", "plan.txt")]  # fmt: skip
    for method, path in writes:
        data = {"PROPPATCH": PROP, "MKCOL": None, "LOCK": LOCKINFO}.get(method, b"mine now")
        status, _, body = await viewer.call(method, f"/{name}/{path}", data=data)
        assert status == 403 and b"viewer" in body, (method, path, status, body)
    status, _, body = await viewer.call("GET", f"/{name}/plan.txt")
    assert body == b"the plan"


async def test_too_many_or_too_large_properties_are_507_and_change_nothing(drive_stack, person):
    dav = await Dav.of(drive_stack, await person())
    url = await dav.folder("Props")
    assert (await dav.call("PUT", url + "a.txt", data=b"a"))[0] == 201

    def update(*props: str) -> str:
        inner = "".join(props)
        return (
            '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:x-test">'
            f"<D:set><D:prop>{inner}</D:prop></D:set></D:propertyupdate>"
        )

    big = update("<z:small>1</z:small>", f"<z:huge>{'x' * 70_000}</z:huge>")
    status, _, body = await dav.call("PROPPATCH", url + "a.txt", data=big)
    assert status == 207 and b"507 Insufficient Storage" in body and b"at most" in body
    many = update(*(f"<z:p{i}>{i}</z:p{i}>" for i in range(101)))
    status, _, body = await dav.call("PROPPATCH", url + "a.txt", data=many)
    assert status == 207 and b"at most 100 properties" in body
    status, _, body = await dav.call("PROPFIND", url + "a.txt", headers={"Depth": "0"})
    assert b"urn:x-test" not in body  # nothing was kept
    assert (await dav.call("PROPPATCH", url + "a.txt", data=update("<z:ok>1</z:ok>")))[0] == 207


async def test_a_put_over_quota_is_507_and_keeps_nothing(drive_stack, person):
    dav = await Dav.of(drive_stack, await person())
    url = await dav.folder("Big")
    status, _, body = await dav.call("PUT", url + "huge.bin", data=os.urandom(E2E_QUOTA + 1))
    assert status == 507 and b"does not fit" in body
    status, _, _ = await dav.call("GET", url + "huge.bin")
    assert status == 404
    status, _, _ = await dav.call("PUT", url + "small.bin", data=b"fits")
    assert status == 201
    asked = (
        '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/>'
        "<D:quota-available-bytes/></D:prop></D:propfind>"
    )
    status, _, body = await dav.call("PROPFIND", url, data=asked, headers={"Depth": "0"})
    assert status == 207
    assert b"<D:quota-used-bytes>4</D:quota-used-bytes>" in body
    assert f"<D:quota-available-bytes>{E2E_QUOTA - 4}<".encode() in body
    # a part of a file is never stored as the whole of it
    status, _, body = await dav.call(
        "PUT", url + "small.bin", data=b"X", headers={"Content-Range": "bytes 0-0/4"}
    )
    assert status == 400 and b"Content-Range" in body
    assert (await dav.call("GET", url + "small.bin"))[2] == b"fits"
    # a COPY charges the copy's size too
    assert (await dav.call("PUT", url + "half.bin", data=os.urandom(E2E_QUOTA // 2)))[0] == 201
    status, _, body = await dav.call(
        "COPY", url + "half.bin", headers={"Destination": url + "again.bin"}
    )
    assert status == 507 and b"does not fit" in body
    assert (await dav.call("GET", url + "again.bin"))[0] == 404
    # a refused COPY over an existing file leaves that file where it was
    status, _, body = await dav.call(
        "COPY", url + "half.bin", headers={"Destination": url + "small.bin", "Overwrite": "T"}
    )
    assert status == 507 and b"does not fit" in body
    assert (await dav.call("GET", url + "small.bin"))[2] == b"fits"


async def test_an_mp3_put_into_a_shared_folder_is_403_with_the_reason(drive_stack, person):
    alice, bob = await person(), await person()
    await shared_folder(drive_stack, alice, bob, "editor")
    name = "Team"
    dav = await Dav.of(drive_stack, alice)
    status, _, body = await dav.call("PUT", f"/{name}/notes.txt", data=mp3())
    assert status == 403 and b"copyright" in body and b"audio" in body, body
    status, _, _ = await dav.call("GET", f"/{name}/notes.txt")
    assert status == 404
    # copying it in from a private folder is sharing it too
    private = await dav.folder("Mine")
    status, _, _ = await dav.call("PUT", private + "tune.mp3", data=mp3())
    assert status == 201
    status, _, body = await dav.call(
        "COPY", private + "tune.mp3", headers={"Destination": f"{dav.root}/{name}/tune.mp3"}
    )
    assert status == 403 and b"copyright" in body


async def test_an_overwrite_is_a_new_version_and_delete_goes_to_the_trash(drive_stack, person):
    alice = await person()
    dav = await Dav.of(drive_stack, alice)
    url = await dav.folder("Work")
    assert (await dav.call("PUT", url + "doc.txt", data=b"one"))[0] == 201
    assert (await dav.call("PUT", url + "doc.txt", data=b"two"))[0] == 204
    api = Api(drive_stack, alice)
    _, _, folders = await api.json("GET", "/folders")
    fid = next(f["id"] for f in folders["folders"] if f["name"] == "Work")
    _, _, versions = await api.json("GET", f"/folders/{fid}/versions?path=doc.txt")
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert (await dav.call("DELETE", url + "doc.txt"))[0] == 204
    assert (await dav.call("GET", url + "doc.txt"))[0] == 404
    _, _, trash = await api.json("GET", f"/folders/{fid}/trash")
    assert [t["name"] for t in trash["trash"]] == ["doc.txt"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_locks_and_dead_properties_survive_a_restart(request, person, database):
    name = "drive_stack" if database == "sqlite" else "pg_drive_stack"
    drive_stack = request.getfixturevalue(name)
    alice, bob = await person(drive_stack), await person(drive_stack)
    await shared_folder(drive_stack, alice, bob, "editor")
    name = "Team"
    dav, other = await Dav.of(drive_stack, alice), await Dav.of(drive_stack, bob)
    assert (await dav.call("PUT", f"/{name}/report.txt", data=b"v1"))[0] == 201
    assert (await dav.call("PROPPATCH", f"/{name}/report.txt", data=PROP))[0] == 207
    status, headers, _ = await dav.call(
        "LOCK", f"/{name}/report.txt", data=LOCKINFO, headers={"Timeout": "Second-3600"}
    )
    assert status == 200
    token = headers["Lock-Token"]
    drive_stack.bridge.stop()
    drive_stack.bridge.start()
    status, _, body = await dav.call("PROPFIND", f"/{name}/report.txt", headers={"Depth": "0"})
    assert status == 207
    assert re.search(rb"<ns\d:colour[^>]*>teal</ns\d:colour>", body), body
    assert token.strip("<>").encode() in body
    status, _, body = await other.call("PUT", f"/{name}/report.txt", data=b"bob's")
    assert status == 423 and b"lock-token-submitted" in body
    status, _, _ = await dav.call("PUT", f"/{name}/report.txt", data=b"v2")
    assert status == 423  # the owner needs the token too
    status, _, _ = await dav.call(
        "PUT", f"/{name}/report.txt", data=b"v2", headers={"If": f"({token})"}
    )
    assert status == 204
    assert (await dav.call("UNLOCK", f"/{name}/report.txt", headers={"Lock-Token": token}))[
        0
    ] == 204
    assert (await other.call("PUT", f"/{name}/report.txt", data=b"bob's"))[0] == 204


@pytest.fixture(scope="module")
def proxied_stack(tmp_path_factory):
    """A drive whose public_url says it is served behind a proxy under /files."""
    workdir = tmp_path_factory.mktemp("dav-proxied")
    settings = {
        "storage_url": f"osfs://{workdir / 'drive-store'}",
        "public_url": "https://drive.example.org/files",
    }
    with Stack(workdir, ["basics", "policy", "drive"], settings={"drive": settings}) as stack:
        yield stack


async def test_behind_a_proxy_prefix_hrefs_and_destinations_carry_it(proxied_stack):
    user = await proxied_stack.user()
    alice = DrivePerson(user, proxied_stack)
    try:
        dav = await Dav.of(proxied_stack, alice)
        answer = await alice.ask(None, "!drive apppassword create phone", "password: ")
        assert "address: https://drive.example.org/files/dav/" in answer
        url = await dav.folder("Work")
        assert (await dav.call("PUT", url + "a.txt", data=b"a"))[0] == 201
        status, _, body = await dav.call("PROPFIND", url, headers={"Depth": "1"})
        assert status == 207 and b"<D:href>/files/dav/Work/a.txt</D:href>" in body, body
        public = "https://drive.example.org/files/dav/Work/b.txt"
        assert (await dav.call("COPY", url + "a.txt", headers={"Destination": public}))[0] == 201
        assert (await dav.call("GET", url + "b.txt"))[2] == b"a"
        elsewhere = "https://other.example.org/files/dav/Work/c.txt"
        status, _, _ = await dav.call("COPY", url + "a.txt", headers={"Destination": elsewhere})
        assert status == 502
    finally:
        await alice.close()
