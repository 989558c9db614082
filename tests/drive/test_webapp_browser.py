"""The drive's web app in a real headless Chromium (Debian's ``chromium``, driven by
``playwright-core`` from npm) against a real Synapse and bridge: standalone at phone
size, and as an Element widget embedded by a host page that answers the widget API with
``matrix-widget-api``'s ClientWidgetApi and a real matrix-js-sdk client.

Needs node, chromium and the npm modules of ``tests/drive/webapp/package.json`` (see
``webapp/modules.py``); skipped, saying which is missing, otherwise (failed under
``CI=true``). The phone-sized screenshots are kept in ``test-artifacts/`` (or
``$ANYWHERE_TEST_ARTIFACTS``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from anywhere.bridge.testing.fixtures import skip_unless_ci
from anywhere.bridge.testing.stack import Stack
from anywhere.bridge.testing.synapse import free_port

from .media import mp3
from .people import Api, DrivePerson, sha
from .webapp.modules import ESBUILD, HERE, missing, node_env, run_scenario

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ANYWHERE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
NEEDED = ("playwright-core", "axe-core")
#: Five pieces of the page's resumable uploads (4 MiB, four sent at a time): when the
#: first piece is done the fifth is not sent yet, so the bar is seen part way.
DROP_SIZE = 20 * 1024 * 1024
HOST_PORT = free_port()
HOST_ORIGIN = f"http://127.0.0.1:{HOST_PORT}"


@pytest.fixture(scope="module")
def webapp_stack(tmp_path_factory) -> Iterator[Stack]:
    """Synapse and a bridge whose web app may be framed by the test's widget host."""
    if (reason := missing(*NEEDED)) is not None:
        skip_unless_ci(reason)
    workdir = tmp_path_factory.mktemp("webapp")
    stack = Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={
            "drive": {
                "storage_url": f"osfs://{workdir / 'drive-store'}",
                "quota_bytes": 64 * 1024 * 1024,
                "webapp_frame_ancestors": [HOST_ORIGIN],
                # Short, so the widget test sees the session renewed.
                "webapp_session_seconds": 6,
            }
        },
    )
    with stack:
        yield stack


@pytest.fixture
async def people(webapp_stack):
    """Factory: ``alice, a = await people()`` — a person and their HTTP client."""
    made: list[DrivePerson] = []

    async def make() -> tuple[DrivePerson, Api]:
        person = DrivePerson(await webapp_stack.user(), webapp_stack)
        made.append(person)
        return person, Api(webapp_stack, person)

    yield make
    for person in made:
        await person.close()


async def test_standalone_at_phone_size_with_password_login_upload_versions_and_refusal(
    webapp_stack, people, tmp_path
):
    stack = webapp_stack
    alice, a = await people()
    bob, b = await people()
    mine = await a.folder("Mine")
    await a.call("PUT", f"/folders/{mine}/files/notes.txt", data=b"version one")
    await a.call("PUT", f"/folders/{mine}/files/notes.txt", data=b"version two")
    shared = await a.folder("Shared")
    await a.json("POST", f"/folders/{shared}/members", json={"user_id": bob.id})
    status, _, _ = await b.json("POST", f"/folders/{shared}/accept")
    assert status == 200
    team = await b.folder("Team")
    await b.json("POST", f"/folders/{team}/members", json={"user_id": alice.id, "role": "editor"})
    carol, _ = await people()
    chat = await alice.user.create_room([alice.bot])
    await alice.user.wait_joined(chat, alice.bot)
    typed = tmp_path / "typed.txt"
    typed.write_bytes(b"typed without a mouse")
    song = tmp_path / "song.mp3"
    song.write_bytes(mp3())
    artifacts = ARTIFACTS / "drive-webapp"
    artifacts.mkdir(parents=True, exist_ok=True)

    found = await asyncio.to_thread(
        run_scenario,
        "standalone.mjs",
        {
            "url": stack.bridge.url,
            "user": alice.id.split(":")[0][1:],
            "password": "correct horse",
            "userId": alice.id,
            "invited": "Team",
            "mine": "Mine",
            "shared": "Shared",
            "dropSize": DROP_SIZE,
            "keyboardFile": str(typed),
            "invitee": carol.id,
            "chat": chat,
            "mp3": str(song),
            "artifacts": str(artifacts),
        },
    )

    # The invitation was accepted: Alice is a joined editor of Bob's folder.
    _, _, members = await b.json("GET", f"/folders/{team}/members")
    assert {"user_id": alice.id, "role": "editor", "state": "joined"} in members["members"]
    # The dropped file went up in pieces, the bar showing it on the way, and came back whole.
    stored_status, _, stored = await a.call("GET", f"/folders/{mine}/files/big.bin")
    assert stored_status == 200 and len(stored) == DROP_SIZE
    assert found["dropped"]["sha256"] == sha(stored) == found["downloaded"]["sha256"]
    assert found["downloaded"]["name"] == "big.bin"
    assert found["progressMax"] == DROP_SIZE
    assert any(0 < value < DROP_SIZE for value in found["progress"]), found["progress"]
    assert found["progress"][-1] == DROP_SIZE and "done" in found["progressText"]
    # Version 1 was restored, then the file renamed, trashed and restored by keyboard.
    _, _, content = await a.call("GET", f"/folders/{mine}/files/renamed.txt")
    assert content == b"version one"
    _, _, content = await a.call("GET", f"/folders/{mine}/files/typed.txt")
    assert content == b"typed without a mouse"
    # Carol was invited (the page listed her as a viewer who has not accepted yet), then
    # revoked; the file was posted into the chat by the bot.
    _, _, members = await a.json("GET", f"/folders/{mine}/members")
    assert carol.id not in [m["user_id"] for m in members["members"]]
    posted = await alice.wait_file(chat, "typed.txt")
    assert await alice.download(posted["content"]["url"]) == b"typed without a mouse"
    # The mp3 was refused in the shared folder, the reason on screen, nothing kept.
    assert "song.mp3 was not uploaded" in found["mp3Error"]
    assert "audio" in found["mp3Error"] and "copyright" in found["mp3Error"]
    _, _, listing = await a.json("GET", f"/folders/{shared}/list")
    assert listing["entries"] == []
    # Phone-sized, accessible, and nothing but the bridge's own origin, no inline script.
    assert found["overflowFolder"] <= 0 and found["overflowError"] <= 0
    assert found["axeLogin"] == [] and found["axeFolder"] == [], found
    assert found["inlineScript"] == {"ran": False, "blocked": "script-src-elem"}
    assert found["origins"] == [stack.bridge.url]
    assert (artifacts / "drive-webapp-phone.png").stat().st_size > 10_000


def _build_host_page(out: Path) -> None:
    built = subprocess.run(
        [
            str(ESBUILD),
            str(HERE / "host.js"),
            "--bundle",
            "--format=esm",
            f"--outfile={out / 'host.js'}",
            "--log-level=warning",
        ],
        env=node_env(),
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (out / "host.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title>'
        '<script type="module" src="host.js"></script></head><body></body></html>'
    )


async def test_the_files_widget_signs_in_with_an_openid_token_and_refuses_bad_ones(
    webapp_stack, people, tmp_path
):
    if (reason := missing("matrix-js-sdk", "matrix-widget-api", "esbuild")) is not None:
        skip_unless_ci(reason)
    stack = webapp_stack
    alice, a = await people()
    room = await alice.new_folder("Board")
    _, _, folders = await a.json("GET", "/folders")
    fid = next(f["id"] for f in folders["folders"] if f["room_id"] == room)
    await a.call("PUT", f"/folders/{fid}/files/minutes.txt", data=b"decided")
    state = await alice.user.client.room_get_state_event(
        room, "im.vector.modular.widgets", "anywhere_drive_files"
    )
    widget_url = state.content["url"].replace("$matrix_room_id", quote(room))
    _build_host_page(tmp_path)
    app = web.Application()
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", HOST_PORT).start()
    try:
        found = await asyncio.to_thread(
            run_scenario,
            "widget.mjs",
            {
                "hostOrigin": HOST_ORIGIN,
                "homeserver": stack.synapse.url,
                "token": alice.token,
                "userId": alice.id,
                "widgetUrl": widget_url,
                "folder": "Board",
                "file": "minutes.txt",
            },
        )
    finally:
        await runner.cleanup()
    assert found["who"] == alice.id and found["openidAsked"] >= 1
    # Still working once the first session had ended: it renewed itself.
    assert found["listedAfterRenewal"] == 200 and found["afterRenewal"] == ""
    assert found["signOutHidden"] and found["session"] is None  # nothing kept by the page
    assert found["axe"] == [], found["axe"]
    assert "forged or has expired" in found["forged"]
    assert "from elsewhere.example" in found["foreign"]
