"""The copyright rule against the ways round it that were found (issue 11): media that
prefix magic misses, and every way content becomes shared — upload, revert, restore,
move, and sharing a folder that holds old versions and trash. Real databases (SQLite and
PostgreSQL), a real blob store, real media made with PyAV."""

from __future__ import annotations

import os
import threading

import pytest

from anywhere.plugins.drive import judge as judge_module
from anywhere.plugins.drive.errors import ContentRefused
from anywhere.plugins.drive.judge import JUDGE_VERSION, UNJUDGED, judge_prefix

from .conftest import chunks_of
from .media import (
    animated_gif,
    flv_audio,
    movie_with_sound,
    mp3,
    mp3_with_junk_in_front,
    mpegts_audio,
    mpegts_video,
    pictures,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")
ALICE, BOB = "@alice:test", "@bob:test"
AUDIO = {
    "an MP3 with a junk byte in front": mp3_with_junk_in_front,
    "FLV audio": flv_audio,
    "MPEG-TS audio": mpegts_audio,
}


async def shared_folder(drive, name: str = "Work"):
    """A folder of Alice's that Bob has accepted as viewer (shared without the folder
    check, as shares made before it were)."""
    folder = await drive.access.create_folder(ALICE, name)
    await drive.access.invite(folder, ALICE, BOB, "viewer")
    await drive.access.membership_changed(folder, BOB, "join")
    return folder


@pytest.mark.parametrize("make", AUDIO.values(), ids=AUDIO.keys())
async def test_audio_that_prefix_magic_misses_is_judged_audio(make):
    assert judge_prefix(make()) == "audio"


async def test_video_in_a_container_magic_misses_is_judged_video_even_with_junk_in_front():
    assert judge_prefix(mpegts_video()) == "video"
    assert judge_prefix(b"junk" + mpegts_video()) == "video"
    assert judge_prefix(pictures("mp4", "libx264", 10)) == "video"  # tiny, 10 frames
    assert judge_prefix(pictures("avif", "libsvtav1", 10)) == "video"  # a sequence
    assert judge_prefix(movie_with_sound()) == "video"  # its sound comes first


async def test_documents_pictures_and_random_bytes_are_not_judged_media():
    assert judge_prefix(b"%PDF-1.4\n" + os.urandom(200_000)) == "document"
    assert judge_prefix(b"\x89PNG\r\n\x1a\n" + os.urandom(5000)) == "image"
    assert judge_prefix(animated_gif()) == "image"  # many frames, still a picture
    assert judge_prefix(pictures("avif", "libsvtav1", 1)) == "image"  # a phone's photo
    assert judge_prefix(b"the plan for tomorrow\n" * 500) is None
    for _ in range(20):
        assert judge_prefix(os.urandom(100_000)) in (None, "document", "image", "archive")


@pytest.mark.parametrize("make", AUDIO.values(), ids=AUDIO.keys())
async def test_uploading_such_audio_into_a_shared_folder_is_refused_and_keeps_nothing(drive, make):
    work = await shared_folder(drive)
    with pytest.raises(ContentRefused, match=r"Work/notes.txt is refused: it is audio \(judged"):
        await drive.upload(ALICE, work, "notes.txt", chunks_of(make()), mime="text/plain")
    assert await drive.tree.children(await drive.tree.lookup(work, [])) == []
    assert await drive.blobs.hashes() == []
    assert (await drive.quota(ALICE)).used == 0


async def test_sharing_a_folder_judges_every_old_version_and_the_trash(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "song.txt", chunks_of(mp3_with_junk_in_front()))
    song, _ = await drive.upload(ALICE, work, "song.txt", chunks_of(b"only words now"))
    old = r"Work/song.txt \(version 1, an older version\)"
    with pytest.raises(ContentRefused, match=old + " is refused: it is audio.*empty the trash"):
        await drive.check_folder_share(ALICE, work)

    await drive.tree.trash(work, song, ALICE)
    with pytest.raises(ContentRefused, match=old + r" \(in the trash\) is refused"):
        await drive.check_folder_share(ALICE, work)
    await drive.empty_trash(ALICE, work)
    await drive.check_folder_share(ALICE, work)

    await drive.tree.mkdir(work, ["old"], ALICE)
    await drive.upload(ALICE, work, "old/tune.txt", chunks_of(flv_audio()))
    await drive.tree.trash(work, await drive.tree.lookup(work, ["old"]), ALICE)
    with pytest.raises(ContentRefused, match=r"Work/old/tune.txt \(in the trash\) is refused"):
        await drive.check_folder_share(ALICE, work)


async def test_reverting_to_an_old_audio_version_in_a_shared_folder_is_refused(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "song.txt", chunks_of(mp3_with_junk_in_front()))
    await drive.upload(ALICE, work, "song.txt", chunks_of(b"only words now"))
    await drive.access.invite(work, ALICE, BOB, "viewer")
    await drive.access.membership_changed(work, BOB, "join")
    with pytest.raises(ContentRefused, match=r"Work/song.txt \(version 1\) is refused: it is"):
        await drive.revert(ALICE, work, "song.txt", 1)
    current = await drive.tree.lookup(work, ["song.txt"])
    assert current.version_no == 2

    alone = await drive.access.create_folder(ALICE, "Alone")  # shared with nobody: fine
    await drive.upload(ALICE, alone, "song.txt", chunks_of(mp3()))
    await drive.upload(ALICE, alone, "song.txt", chunks_of(b"words"))
    assert (await drive.revert(ALICE, alone, "song.txt", 1)).version_no == 3


async def test_restoring_audio_from_the_trash_of_a_shared_folder_is_refused(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.tree.mkdir(work, ["music"], ALICE)
    await drive.upload(ALICE, work, "music/a.bin", chunks_of(mpegts_audio()))
    music = await drive.tree.trash(work, await drive.tree.lookup(work, ["music"]), ALICE)
    await drive.access.invite(work, ALICE, BOB, "viewer")
    await drive.access.membership_changed(work, BOB, "join")
    with pytest.raises(ContentRefused, match=r"Work/music/a.bin \(in the trash\) is refused"):
        await drive.restore(ALICE, work, music)
    assert [n.name for n in await drive.tree.trashed(work)] == ["music"]

    alone = await drive.access.create_folder(ALICE, "Alone")
    song, _ = await drive.upload(ALICE, alone, "song.mp3", chunks_of(mp3()))
    trashed = await drive.tree.trash(alone, song, ALICE)
    assert (await drive.restore(ALICE, alone, trashed)).trashed_at is None


async def test_moving_flv_audio_into_a_shared_folder_is_refused(drive):
    mine = await drive.access.create_folder(ALICE, "Mine")
    team = await shared_folder(drive, "Team")
    tune, _ = await drive.upload(ALICE, mine, "tune.dat", chunks_of(flv_audio()))
    root = await drive.tree.lookup(team, [])
    with pytest.raises(ContentRefused, match="sharing Team/tune.dat is refused: it is audio"):
        await drive.move_to_folder(ALICE, mine, tune, team, root, "tune.dat")
    assert await drive.tree.walk(team) == []


async def test_content_is_judged_once_and_judged_again_by_a_newer_judge(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    node, _ = await drive.upload(ALICE, work, "a.txt", chunks_of(mpegts_audio()))
    row = await drive.db.fetchrow(
        "SELECT kind, judge FROM drive_content_kind WHERE sha256 = $1", node.sha256
    )
    assert (row["kind"], row["judge"]) == ("audio", JUDGE_VERSION)
    await drive.db.execute(  # as an older judge, which missed MPEG-TS, left it
        "UPDATE drive_content_kind SET kind = NULL, judge = $2 WHERE sha256 = $1",
        node.sha256,
        JUDGE_VERSION - 1,
    )
    assert (await drive.kinds_of(node)).sniffed == "audio"
    await drive.tree.trash(work, node, ALICE)
    await drive.empty_trash(ALICE, work)
    assert await drive.db.fetchval("SELECT COUNT(*) FROM drive_content_kind") == 0


async def test_content_that_cannot_be_judged_in_time_counts_as_video(drive, monkeypatch):
    """A probe stuck in FFmpeg does not hold the bridge: the wait gives up, fail-closed."""
    release = threading.Event()
    started = threading.Event()

    def stuck(prefix: bytes, timeout: float = 0) -> str | None:
        started.set()
        release.wait(30)
        return None

    monkeypatch.setattr(judge_module, "judge_prefix", stuck)
    monkeypatch.setattr(judge_module, "PROBE_SECONDS", 0.05)
    try:
        assert await drive.judge.judge(b"anything") == UNJUDGED
        assert started.is_set()
    finally:
        release.set()
