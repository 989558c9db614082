"""Files end to end: from chat into the drive, out of the drive into chats, the
commands, quota, unsafe paths and the copyright rule."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from anywhere.storage.blobs_fs import blob_path

from .people import Api, sha

pytestmark = pytest.mark.e2e
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(3000)


async def test_a_file_sent_from_chat_is_listed_and_downloads_identical(person, any_drive_stack):
    alice = await person(any_drive_stack)
    room = await alice.new_folder("Photos")
    data = os.urandom(1_500_000)
    answer = await alice.saved(room, await alice.send_file(room, "cat.jpg", data, "image/jpeg"))
    assert answer == "Saved cat.jpg in Photos (1.4 MB, version 1)."
    assert "cat.jpg — 1.4 MB, v1" in await alice.ask(room, "!drive ls")
    assert "cat.jpg" in await alice.ask(None, "!drive ls Photos")

    dm = await alice.dm()
    mark = alice.user.mark(dm)
    await alice.user.send_text(dm, "drive get Photos/cat.jpg")
    posted = await alice.wait_file(dm, "cat.jpg", start=mark)
    assert posted["content"]["info"]["size"] == len(data)
    assert posted["content"]["org.anywhere.drive"]["sha256"] == sha(data)
    assert sha(await alice.download(posted["content"]["url"])) == sha(data)


async def test_a_file_from_chat_is_saved_once_though_the_bridge_was_killed_meanwhile(
    person, drive_stack
):
    """Saving runs as a background job: one the bridge was killed before or during runs
    (again) when it is back, and the file has one version."""
    alice = await person()
    room = await alice.new_folder("Crash")
    data = os.urandom(1_500_000)
    event_id = await alice.send_file(room, "report.pdf", data, "application/pdf")
    drive_stack.bridge.kill()
    await asyncio.to_thread(drive_stack.bridge.start)
    assert await alice.saved(room, event_id) == "Saved report.pdf in Crash (1.4 MB, version 1)."
    listing = await alice.ask(room, "!drive ls")
    assert "report.pdf — 1.4 MB, v1" in listing and "v2" not in listing


async def test_share_posts_a_downloadable_file_into_another_room(person):
    alice, bob = await person(), await person()
    folder_room = await alice.new_folder("Reports")
    data = b"%PDF-1.4\n" + os.urandom(200_000)
    await alice.saved(
        folder_room, await alice.send_file(folder_room, "q1.pdf", data, "application/pdf")
    )
    chat = await alice.user.create_room([alice.bot, bob.id], name="Decision tonight")
    await bob.join(chat)
    await alice.user.wait_joined(chat, alice.bot)

    await alice.ask(folder_room, f"!drive share q1.pdf {chat}", "Shared q1.pdf into")
    posted = await bob.wait_file(chat, "q1.pdf")
    assert posted["content"]["msgtype"] == "m.file"
    assert sha(await bob.download(posted["content"]["url"])) == sha(data)

    outsider_room = await bob.user.create_room([bob.bot], name="Not Alice's")
    await bob.user.wait_joined(outsider_room, bob.bot)
    await alice.ask(folder_room, f"!drive share q1.pdf {outsider_room}", "you are not a member")


async def test_audio_shared_out_is_refused_with_a_reason_also_renamed_to_txt(person):
    alice, bob = await person(), await person()
    room = await alice.new_folder("Music")
    await alice.saved(room, await alice.send_file(room, "song.txt", MP3, "text/plain"))
    chat = await alice.user.create_room([alice.bot, bob.id])
    await alice.user.wait_joined(chat, alice.bot)
    answer = await alice.ask(room, f"!drive share song.txt {chat}", "refused")
    assert "it is audio (judged by its content)" in answer
    assert "copyright" in answer
    answer = await alice.ask(room, f"!drive invite {bob.id}", "refused")
    assert "Music/song.txt" in answer and "audio" in answer
    # Nothing must reach Bob: a later invitation (a marker) does, and it comes alone.
    marker = await alice.new_folder("Marker")
    await alice.ask(marker, f"!drive invite {bob.id} viewer", "Invited")
    deadline = time.monotonic() + 30
    while marker not in bob.user.invites:
        assert time.monotonic() < deadline, f"{bob.id} got no invite to the marker folder"
        await bob.user.sync_once()
    assert room not in bob.user.invites
    assert bob.id not in await alice.ask(room, "!drive members")


async def test_an_upload_over_quota_keeps_nothing(person):
    alice = await person()
    room = await alice.new_folder("Big")
    first = os.urandom(3_500_000)
    assert "Saved" in await alice.saved(room, await alice.send_file(room, "one.bin", first))
    answer = await alice.saved(room, await alice.send_file(room, "two.bin", os.urandom(3_000_000)))
    assert answer.startswith("Not saved: 2.9 MB does not fit")
    assert "nothing was kept" in answer
    listing = await alice.ask(room, "!drive ls")
    assert "one.bin" in listing and "two.bin" not in listing
    assert "You use 3.3 MB of 6.0 MB" in await alice.ask(room, "!drive quota")


async def test_an_upload_that_nearly_fills_the_drive_says_so(person):
    alice = await person()
    room = await alice.new_folder("Almost")
    answer = await alice.saved(room, await alice.send_file(room, "a.bin", os.urandom(2_000_000)))
    assert answer == "Saved a.bin in Almost (1.9 MB, version 1)."  # a third: nothing said
    answer = await alice.saved(room, await alice.send_file(room, "b.bin", os.urandom(3_800_000)))
    assert answer == (
        "Saved b.bin in Almost (3.6 MB, version 1). Your drive is 92% full: 5.5 MB of "
        "6.0 MB; uploads past it are refused."
    )


async def test_dot_dot_absolute_and_symlinked_paths_are_refused(person, drive_stack):
    alice = await person()
    room = await alice.new_folder("Safe")
    await alice.ask(room, "!drive ls ../../etc", "paths stay inside their folder")
    await alice.ask(room, "!drive get /etc/passwd", "absolute path")
    await alice.ask(None, "!drive ls Safe/../Other", "paths stay inside their folder")
    answer = await alice.saved(room, await alice.send_file(room, "../escape.txt", b"out"))
    assert answer.startswith("Not saved:") and "stay inside" in answer

    outside = drive_stack.workdir / "outside.txt"
    outside.write_bytes(b"precious")
    content = os.urandom(1000)
    link = drive_stack.drive_root / blob_path(sha(content))
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    answer = await alice.saved(room, await alice.send_file(room, "x.bin", content))
    assert answer.startswith("Not saved:") and "leads outside" in answer
    assert outside.read_bytes() == b"precious"
    assert "Safe: empty" in await alice.ask(room, "!drive ls")


async def test_mkdir_mv_rm_trash_restore_versions_and_revert(person):
    alice = await person()
    room = await alice.new_folder("Project")
    await alice.ask(room, "!drive mkdir docs/old", "Created Project/docs/old")
    for text in (b"draft one", b"draft two"):
        await alice.saved(room, await alice.send_file(room, "plan.txt", text, "text/plain"))
    versions = await alice.ask(room, "!drive versions plan.txt")
    assert "  2: 9 B" in versions and "(current)" in versions and "  1: 9 B" in versions
    await alice.ask(room, "!drive revert plan.txt 1", "back to version 1 (saved as version 3)")
    await alice.ask(room, "!drive mv plan.txt docs", "Moved plan.txt to docs/plan.txt")
    await alice.ask(room, "!drive mv docs/plan.txt docs/final.txt", "to docs/final.txt")
    await alice.ask(room, "!drive rm docs/final.txt", "to the trash")
    assert "docs/final.txt" in await alice.ask(room, "!drive trash")
    assert "final.txt" not in await alice.ask(room, "!drive ls docs")
    await alice.ask(room, "!drive restore docs/final.txt", "Restored Project/docs/final.txt")
    dm = await alice.dm()
    mark = alice.user.mark(dm)
    await alice.user.send_text(dm, "drive get Project/docs/final.txt")
    posted = await alice.wait_file(dm, "final.txt", start=mark)
    assert await alice.download(posted["content"]["url"]) == b"draft one"
    await alice.ask(room, "!drive mv docs/final.txt docs/FINAL.TXT", "Moved")
    await alice.ask(room, "!drive mkdir docs/old/x", "Created")
    await alice.ask(room, "!drive mv docs/old Docs2", "Moved")
    await alice.ask(room, "!drive mv Docs2 docs/old2", "Moved")
    await alice.ask(room, "!drive rm docs/old2", "to the trash")
    await alice.ask(room, "!drive empty", "Emptied the trash of Project: 2 items deleted")
    assert "empty" in await alice.ask(room, "!drive trash")
    await alice.ask(room, "!drive nonsense", "unknown action 'nonsense'")


async def test_a_file_moves_into_another_shared_folder_by_command_and_over_http(
    person, drive_stack
):
    alice = await person()
    room = await alice.new_folder("Inbox")
    await alice.new_folder("Team")
    await alice.saved(room, await alice.send_file(room, "memo.txt", b"team memo", "text/plain"))
    answer = await alice.ask(None, "!drive mv Inbox/memo.txt Team")
    assert answer == (
        "Moved Inbox/memo.txt to Team/memo.txt; the original is in the trash of Inbox with "
        "its older versions."
    )
    assert "memo.txt" in await alice.ask(None, "!drive ls Team")
    assert "memo.txt" in await alice.ask(None, "!drive trash Inbox")

    a = Api(drive_stack, alice)
    _, _, folders = await a.json("GET", "/folders")
    ids = {f["name"]: f["id"] for f in folders["folders"]}
    status, _, _ = await a.call("PUT", f"/folders/{ids['Inbox']}/files/b.txt", data=b"bee")
    assert status == 201
    status, _, body = await a.json(
        "POST",
        f"/folders/{ids['Inbox']}/move",
        json={"from": "b.txt", "to": "b-moved.txt", "to_folder": ids["Team"]},
    )
    assert status == 200, body
    _, _, got = await a.call("GET", f"/folders/{ids['Team']}/files/b-moved.txt")
    assert got == b"bee"
    status, _, _ = await a.call("GET", f"/folders/{ids['Inbox']}/files/b.txt")
    assert status == 404
