"""The copyright rule end to end, against the ways round it found in issue 11: audio that
prefix magic misses (an MP3 with a junk byte in front, FLV, MPEG-TS) sent into a shared
folder from a Matrix client, and sharing a folder whose old versions or trash hold audio.
Real media made with PyAV."""

from __future__ import annotations

import pytest

from .media import flv_audio, mp3_with_junk_in_front, mpegts_audio

pytestmark = pytest.mark.e2e


async def shared_with_viewer(alice, bob, name: str) -> str:
    room = await alice.new_folder(name)
    await alice.ask(room, f"!drive invite {bob.id} viewer", "Invited")
    await bob.join(await bob.wait_invite())
    await alice.user.wait_for_notice(room, alice.bot, f"{bob.id} accepted")
    return room


async def test_audio_in_disguise_sent_into_a_shared_folder_is_not_saved(person):
    alice, bob = await person(), await person()
    room = await shared_with_viewer(alice, bob, "Music")
    for name, data, mime in (
        ("notes.txt", mp3_with_junk_in_front(), "text/plain"),
        ("clip.bin", flv_audio(), "application/octet-stream"),
        ("talk.dat", mpegts_audio(), "application/octet-stream"),
    ):
        answer = await alice.saved(room, await alice.send_file(room, name, data, mime))
        assert answer.startswith(
            f"Not saved: sharing Music/{name} is refused: it is audio (judged by its content)"
        ), answer
    assert "Music: empty" in await bob.ask(room, "!drive ls")


async def test_a_folder_whose_old_versions_or_trash_hold_audio_is_not_shared(person):
    alice, bob = await person(), await person()
    room = await alice.new_folder("Old")
    for data in (mp3_with_junk_in_front(), b"only words now"):
        await alice.saved(room, await alice.send_file(room, "song.txt", data, "text/plain"))
    answer = await alice.ask(room, f"!drive invite {bob.id} viewer", "refused")
    assert "Old/song.txt (version 1, an older version) is refused: it is audio" in answer
    assert "empty the trash" in answer

    await alice.ask(room, "!drive rm song.txt", "to the trash")
    answer = await alice.ask(room, f"!drive invite {bob.id} viewer", "refused")
    assert "Old/song.txt (version 1, an older version) (in the trash)" in answer

    await alice.ask(room, "!drive empty", "Emptied the trash of Old")
    await alice.ask(room, f"!drive invite {bob.id} viewer", f"Invited {bob.id} to Old")
    assert await bob.wait_invite() == room


async def test_moving_flv_audio_into_a_shared_folder_is_refused(person):
    alice, bob = await person(), await person()
    mine = await alice.new_folder("Mine")
    await shared_with_viewer(alice, bob, "Team")
    await alice.saved(mine, await alice.send_file(mine, "tune.dat", flv_audio()))
    answer = await alice.ask(None, "!drive mv Mine/tune.dat Team", "refused")
    assert "sharing Team/tune.dat is refused: it is audio (judged by its content)" in answer
    assert "Team: empty" in await bob.ask(None, "!drive ls Team")
