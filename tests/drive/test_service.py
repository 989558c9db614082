"""The drive's rules on a real database (SQLite and PostgreSQL) and a real blob store."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import replace

import pytest
from mautrix.util.async_db import Scheme

from anywhere.plugins.drive.errors import (
    Conflict,
    ContentRefused,
    Denied,
    NotFound,
    QuotaExceeded,
    StaleRevision,
)
from anywhere.plugins.drive.names import InvalidName
from anywhere.plugins.drive.service import allow_everything

from .conftest import chunks_of

pytestmark = pytest.mark.asyncio(loop_scope="function")
ALICE, BOB, CAROL = "@alice:test", "@bob:test", "@carol:test"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 500


async def read_all(drive, node) -> bytes:
    return b"".join([c async for c in drive.content(node)])


async def test_an_invitation_gives_no_access_until_accepted(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.access.invite(work, ALICE, BOB, "editor")
    with pytest.raises(Denied, match="not accepted yet"):
        await drive.resolve(BOB, work, "")
    assert await drive.access.membership_changed(work, BOB, "join") == "joined"
    node, _ = await drive.resolve(BOB, work, "")
    assert node.is_dir
    await drive.upload(BOB, work, "notes.txt", chunks_of(b"from bob"))
    assert [n.name for n in await drive.tree.children(node)] == ["notes.txt"]


async def test_decline_leave_and_revoke_end_access(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.access.invite(work, ALICE, BOB, "viewer")
    assert await drive.access.membership_changed(work, BOB, "leave") == "declined"
    with pytest.raises(Denied, match="no access"):
        await drive.resolve(BOB, work, "")
    await drive.access.invite(work, ALICE, CAROL, "editor")
    await drive.access.membership_changed(work, CAROL, "join")
    with pytest.raises(Denied, match="only the owner"):
        await drive.access.revoke(work, CAROL, BOB)
    await drive.access.revoke(work, ALICE, CAROL)
    with pytest.raises(Denied, match="no access"):
        await drive.resolve(CAROL, work, "")
    await drive.access.invite(work, ALICE, BOB, "editor")
    await drive.access.membership_changed(work, BOB, "join")
    assert await drive.access.membership_changed(work, BOB, "leave") == "left"
    with pytest.raises(Denied):
        await drive.resolve(BOB, work, "")


async def test_a_viewer_can_read_but_not_write(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "plan.txt", chunks_of(b"the plan"))
    await drive.access.invite(work, ALICE, BOB, "viewer")
    await drive.access.membership_changed(work, BOB, "join")
    node, _ = await drive.resolve(BOB, work, "plan.txt")
    assert await read_all(drive, node) == b"the plan"
    with pytest.raises(Denied, match="viewer"):
        await drive.upload(BOB, work, "plan.txt", chunks_of(b"mine now"))
    with pytest.raises(Denied, match="viewer"):
        await drive.resolve(BOB, work, "plan.txt", write=True)


async def test_versions_revert_and_identical_content_stored_once(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    for text in (b"v1", b"v2", b"v3"):
        node, added = await drive.upload(ALICE, work, "doc.txt", chunks_of(text))
        assert added
    versions = await drive.tree.versions(node)
    assert [v.number for v in versions] == [3, 2, 1]
    assert versions[-1].sha256 == hashlib.sha256(b"v1").hexdigest()
    reverted = await drive.revert(ALICE, work, "doc.txt", 1)
    assert await read_all(drive, reverted) == b"v1"
    assert reverted.version_no == 4
    with pytest.raises(NotFound, match="no version 9"):
        await drive.revert(ALICE, work, "doc.txt", 9)
    assert (await drive.quota(ALICE)).used == 2 + 2 + 2 + 2  # every version counts


async def test_a_repeated_chat_event_adds_no_second_version(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    node, added = await drive.upload(ALICE, work, "a.txt", chunks_of(b"x"), source="$ev1")
    again, added_again = await drive.upload(ALICE, work, "a.txt", chunks_of(b"x"), source="$ev1")
    assert added and not added_again and again.id == node.id
    assert [v.number for v in await drive.tree.versions(node)] == [1]


async def test_names_colliding_by_case_or_normalisation_are_refused(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.tree.mkdir(work, ["Café"], ALICE)
    cafe = await drive.tree.lookup(work, [unicodedata.normalize("NFD", "CAFÉ")])
    assert cafe.name == "Café"  # found by its collision key
    await drive.tree.mkdir(work, ["Other"], ALICE)
    other_dir = await drive.tree.lookup(work, ["Other"])
    root = await drive.tree.lookup(work, [])
    with pytest.raises(Conflict, match="already exists"):
        await drive.tree.move(work, other_dir, root, unicodedata.normalize("NFD", "CAFÉ"), ALICE)
    await drive.upload(ALICE, work, "Report.pdf", chunks_of(b"%PDF-1.4"))
    await drive.upload(ALICE, work, "other.pdf", chunks_of(b"%PDF-1.4 other"))
    other = await drive.tree.lookup(work, ["other.pdf"])
    root = await drive.tree.lookup(work, [])
    with pytest.raises(Conflict, match="already exists"):
        await drive.tree.move(work, other, root, "REPORT.PDF", ALICE)
    with pytest.raises(InvalidName, match="'..'"):
        await drive.upload(ALICE, work, "../escape.txt", chunks_of(b"x"))
    with pytest.raises(Conflict, match="already have a folder"):
        await drive.access.create_folder(ALICE, "work")


async def test_move_trash_and_restore_touch_no_content(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.tree.mkdir(work, ["a", "b"], ALICE)
    node, _ = await drive.upload(ALICE, work, "a/b/c.txt", chunks_of(b"deep"))
    root = await drive.tree.lookup(work, [])
    moved = await drive.tree.move(work, node, root, "top.txt", ALICE)
    assert await drive.tree.path_of(moved) == "top.txt" and moved.sha256 == node.sha256
    a = await drive.tree.lookup(work, ["a"])
    with pytest.raises(Conflict, match="into itself"):
        await drive.tree.move(work, a, await drive.tree.lookup(work, ["a", "b"]), "a", ALICE)
    trashed = await drive.tree.trash(work, moved, ALICE)
    with pytest.raises(NotFound):
        await drive.tree.lookup(work, ["top.txt"])
    assert [n.id for n in await drive.tree.trashed(work)] == [trashed.id]
    assert (await drive.quota(ALICE)).used == 4  # the trash counts
    await drive.upload(ALICE, work, "top.txt", chunks_of(b"new one"))
    with pytest.raises(Conflict, match="exists again"):
        await drive.tree.restore(work, trashed, ALICE)
    await drive.tree.trash(work, await drive.tree.lookup(work, ["top.txt"]), ALICE)
    restored = await drive.tree.restore(work, trashed, ALICE)
    assert await read_all(drive, restored) == b"deep"


async def test_a_stale_revision_is_refused_and_nothing_changes(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    node, _ = await drive.upload(ALICE, work, "a.txt", chunks_of(b"one"))
    await drive.upload(ALICE, work, "a.txt", chunks_of(b"two"), if_match=node.revision)
    with pytest.raises(StaleRevision, match="not at revision 2 any more \\(it is at 3\\)"):
        await drive.upload(ALICE, work, "a.txt", chunks_of(b"three"), if_match=node.revision)
    with pytest.raises(StaleRevision, match="already exists"):
        await drive.upload(ALICE, work, "a.txt", chunks_of(b"four"), create_only=True)
    current = await drive.tree.lookup(work, ["a.txt"])
    assert await read_all(drive, current) == b"two"
    with pytest.raises(StaleRevision):
        await drive.tree.trash(work, current, ALICE, if_match=node.revision)


async def test_an_upload_over_quota_keeps_nothing(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "big.bin", chunks_of(b"x" * 900_000, 100_000))
    with pytest.raises(QuotaExceeded, match="does not fit.*nothing was kept"):
        await drive.upload(ALICE, work, "more.bin", chunks_of(b"y" * 200_000, 10_000))
    with pytest.raises(QuotaExceeded):  # refused up front when the size is declared
        await drive.upload(ALICE, work, "more.bin", chunks_of(b""), declared_size=200_000)
    assert (await drive.quota(ALICE)).used == 900_000
    with pytest.raises(NotFound):
        await drive.tree.lookup(work, ["more.bin"])
    assert len(list(drive.blobs.fs.walk.files("/blobs"))) == 1
    assert drive.blobs.fs.listdir("tmp") == []


async def test_an_upload_cut_off_half_way_leaves_nothing(drive):
    work = await drive.access.create_folder(ALICE, "Work")

    async def cut_off():
        yield b"a" * 50_000
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await drive.upload(ALICE, work, "half.bin", cut_off())
    with pytest.raises(NotFound):
        await drive.tree.lookup(work, ["half.bin"])
    assert (await drive.quota(ALICE)).used == 0
    assert drive.blobs.fs.listdir("tmp") == []


async def test_audio_is_refused_sharing_out_even_renamed_to_txt(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "song.txt", chunks_of(MP3), mime="text/plain")
    node = await drive.tree.lookup(work, ["song.txt"])
    with pytest.raises(ContentRefused, match="audio \\(judged by its content\\).*copyright"):
        await drive.check_share(ALICE, "Work/song.txt", await drive.kinds_of(node))
    with pytest.raises(ContentRefused, match="Work/song.txt"):
        await drive.check_folder_share(ALICE, work)
    await drive.upload(ALICE, work, "notes.txt", chunks_of(b"plain words"))
    doc = await drive.tree.lookup(work, ["notes.txt"])
    await drive.check_share(ALICE, "Work/notes.txt", await drive.kinds_of(doc))


async def test_a_policy_denial_overrides_the_drive_and_allowed_kinds_follow_config(drive):
    class Denial:
        allowed = False
        reason = "images are off limits here"

    async def deny_images(actor, action, target, context):
        assert action == "drive.share"
        if "image" in context.values():
            return Denial()
        return None

    drive._authorize = deny_images
    work = await drive.access.create_folder(ALICE, "Work")
    node, _ = await drive.upload(
        ALICE, work, "pic.png", chunks_of(b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    )
    with pytest.raises(ContentRefused, match="images are off limits here"):
        await drive.check_share(ALICE, "Work/pic.png", await drive.kinds_of(node))

    drive._authorize = allow_everything
    song, _ = await drive.upload(ALICE, work, "song.mp3", chunks_of(MP3))
    song_kinds, pic_kinds = await drive.kinds_of(song), await drive.kinds_of(node)
    with pytest.raises(ContentRefused, match="it is audio"):  # the default: audio and video
        await drive.check_share(ALICE, "Work/song.mp3", song_kinds)
    await drive.check_share(ALICE, "Work/pic.png", pic_kinds)
    drive.settings = replace(drive.settings, share_blocked_kinds=["image"])
    await drive.check_share(ALICE, "Work/song.mp3", song_kinds)
    with pytest.raises(ContentRefused, match="it is image \\(judged by its content\\)"):
        await drive.check_share(ALICE, "Work/pic.png", pic_kinds)
    drive.settings = replace(drive.settings, share_blocked_kinds=[])
    await drive.check_share(ALICE, "Work/song.mp3", song_kinds)
    await drive.check_share(ALICE, "Work/pic.png", pic_kinds)


async def test_the_change_feed_lists_each_changed_node_once_since_a_cursor(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    start = await drive.tree.cursor(work)
    a, _ = await drive.upload(ALICE, work, "a.txt", chunks_of(b"1"))
    await drive.upload(ALICE, work, "a.txt", chunks_of(b"2"))
    mid = await drive.tree.cursor(work)
    b, _ = await drive.upload(ALICE, work, "b.txt", chunks_of(b"3"))
    changes = await drive.tree.changes(work, start)
    assert [n.name for _, _, n in changes] == ["a.txt", "b.txt"]
    assert [n.name for _, _, n in await drive.tree.changes(work, mid)] == ["b.txt"]
    await drive.tree.trash(work, b, ALICE)
    ((seq, node_id, node),) = await drive.tree.changes(work, mid)
    assert node.trashed_at is not None and seq == await drive.tree.cursor(work)
    assert node_id == b.id
    # emptied from the trash: still in the feed, as gone
    await drive.empty_trash(ALICE, work)
    ((seq, node_id, node),) = await drive.tree.changes(work, mid)
    assert (node_id, node) == (b.id, None) and seq == await drive.tree.cursor(work)


async def test_the_quota_is_charged_atomically_with_the_version(drive, monkeypatch):
    """Two versions recorded at once that each fit but not together: one is refused, and
    no empty file is left behind by the refused one. On PostgreSQL both transactions are
    held until both are about to charge, so a charge that read the usage and then wrote
    it would let both through; SQLite lets one writer in at a time (holding one there
    would only make the other wait for the lock), so there they simply run together."""
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.upload(ALICE, work, "first.txt", chunks_of(b"1"))  # the usage row exists
    root = await drive.tree.lookup(work, [])
    blob_a = await drive.blobs.writer()
    await blob_a.write(b"a" * 600_000)
    stored = await blob_a.commit()
    if drive.db.scheme in (Scheme.POSTGRES, Scheme.COCKROACH):
        arrived, both_charging = [], asyncio.Event()
        charge = drive.tree._charge

        async def charge_together(conn, owner, size, quota):
            arrived.append(size)
            if len(arrived) == 2:
                both_charging.set()
            await both_charging.wait()
            await charge(conn, owner, size, quota)

        monkeypatch.setattr(drive.tree, "_charge", charge_together)

    def record(name: str):
        return drive.tree.add_version(
            work, root, name, sha256=stored.sha256, size=stored.size, mime=None,
            actor=ALICE, quota=1_000_000,
        )  # fmt: skip

    results = await asyncio.gather(record("a.bin"), record("b.bin"), return_exceptions=True)
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 1, results
    assert "nothing was kept" in str(refused[0])
    names = [n.name for n in await drive.tree.children(root)]
    assert len(names) == 2 and "first.txt" in names
    assert (await drive.quota(ALICE)).used == 600_001


async def test_parallel_uploads_hold_their_quota_while_their_bytes_arrive(drive):
    """Upload A has written 600 KB of a 1 MB quota and is still going: upload B is
    refused as soon as it would pass the 400 KB left, not after writing all of it (and
    without A's bytes counted, B's 600 KB would even be kept, and A refused)."""
    work = await drive.access.create_folder(ALICE, "Work")
    a_has_written, a_may_finish = asyncio.Event(), asyncio.Event()

    async def upload_a():
        yield b"a" * 600_000
        a_has_written.set()  # runs once A asks for more: its first chunk is written
        await a_may_finish.wait()
        yield b"a" * 100

    sent = 0

    async def upload_b():
        nonlocal sent
        for _ in range(60):
            sent += 10_000
            yield b"b" * 10_000

    a = asyncio.create_task(drive.upload(ALICE, work, "a.bin", upload_a()))
    try:
        await a_has_written.wait()
        with pytest.raises(QuotaExceeded, match=r"has 390.6 KB free .*uploads under way"):
            await drive.upload(ALICE, work, "b.bin", upload_b())
        assert sent == 410_000  # refused at the chunk that would not fit
        assert drive.blobs.fs.listdir("tmp") != []  # A's upload, still under way
    finally:
        a_may_finish.set()
        node, added = await a
    assert added and node.size == 600_100
    assert (await drive.quota(ALICE)).used == 600_100
    assert [n.name for n in await drive.tree.children(await drive.tree.lookup(work, []))] == [
        "a.bin"
    ]
    assert drive.blobs.fs.listdir("tmp") == []
    assert drive.reservations.held(ALICE) == 0


async def test_parallel_uploads_that_fit_together_all_go_through(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    a_has_written, a_may_finish = asyncio.Event(), asyncio.Event()

    async def upload_a():
        yield b"a" * 500_000
        a_has_written.set()
        await a_may_finish.wait()
        yield b"a" * 100_000

    a = asyncio.create_task(drive.upload(ALICE, work, "a.bin", upload_a()))
    try:
        await a_has_written.wait()
        b, _ = await drive.upload(ALICE, work, "b.bin", chunks_of(b"b" * 300_000, 10_000))
        c, _ = await drive.upload(
            ALICE, work, "c.bin", chunks_of(b"c" * 100_000), declared_size=100_000
        )
        with pytest.raises(QuotaExceeded, match="does not fit"):  # announced: refused at once
            await drive.upload(ALICE, work, "d.bin", chunks_of(b""), declared_size=100_001)
    finally:
        a_may_finish.set()
        a_node, _ = await a
    assert (a_node.size, b.size, c.size) == (600_000, 300_000, 100_000)
    assert (await drive.quota(ALICE)).used == 1_000_000
    assert drive.reservations.held(ALICE) == 0


async def test_upgrading_a_version_1_database_counts_the_usage_it_holds(database_url):
    from anywhere.plugins.drive.schema import DRIVE_MIGRATIONS, create_tables
    from anywhere.storage import Migrations, open_database, run_migrations

    db = await open_database(database_url)
    try:
        await run_migrations(db, [Migrations("drive", [create_tables])])
        await db.execute(
            "INSERT INTO drive_folder (id, owner, name, name_key, root_id, created_at) "
            "VALUES ('f', $1, 'W', 'w', 'r', 0)",
            ALICE,
        )
        await db.execute(
            "INSERT INTO drive_node (id, folder_id, parent_id, name, name_key, kind, revision, "
            "updated_at, updated_by) VALUES ('n', 'f', 'r', 'a', 'a', 'file', 3, 0, $1)",
            ALICE,
        )
        for number, size in ((1, 100), (2, 250)):
            await db.execute(
                "INSERT INTO drive_file_version (node_id, number, sha256, size, author, "
                "created_at) VALUES ('n', $1, 'x', $2, $3, 0)",
                number,
                size,
                ALICE,
            )
        versions = await run_migrations(db, [DRIVE_MIGRATIONS])
        assert versions["drive"] == len(DRIVE_MIGRATIONS.steps)
        assert await db.fetchval("SELECT bytes FROM drive_usage WHERE owner = $1", ALICE) == 350
    finally:
        await db.stop()


async def test_emptying_the_trash_deletes_for_good_frees_quota_and_unused_content(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    await drive.access.invite(work, ALICE, BOB, "editor")
    await drive.access.membership_changed(work, BOB, "join")
    await drive.tree.mkdir(work, ["old"], ALICE)
    report, _ = await drive.upload(ALICE, work, "old/report.pdf", chunks_of(b"r" * 100_000))
    await drive.upload(ALICE, work, "old/report.pdf", chunks_of(b"R" * 50_000))  # 2 versions
    shared, _ = await drive.upload(ALICE, work, "old/logo.png", chunks_of(b"L" * 20_000))
    keep, _ = await drive.upload(ALICE, work, "logo-copy.png", chunks_of(b"L" * 20_000))
    assert (await drive.quota(ALICE)).used == 190_000
    old = await drive.tree.lookup(work, ["old"])
    await drive.tree.trash(work, old, ALICE)

    with pytest.raises(Denied, match="only the owner"):
        await drive.empty_trash(BOB, work)
    assert await drive.empty_trash(ALICE, work) == (3, 170_000)  # the folder and its 2 files
    assert (await drive.quota(ALICE)).used == 20_000
    assert await drive.tree.trashed(work) == []
    for gone in (old, report, shared):
        with pytest.raises(NotFound):
            await drive.tree.node(gone.id)
    # the report's content went; the logo's stays, as the copy still uses it
    assert not await drive.blobs.exists(hashlib.sha256(b"r" * 100_000).hexdigest())
    assert not await drive.blobs.exists(hashlib.sha256(b"R" * 50_000).hexdigest())
    assert await read_all(drive, await drive.tree.node(keep.id)) == b"L" * 20_000
    assert await drive.empty_trash(ALICE, work) == (0, 0)


async def test_only_trash_older_than_the_limit_expires(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    old, _ = await drive.upload(ALICE, work, "old.txt", chunks_of(b"old"))
    new, _ = await drive.upload(ALICE, work, "new.txt", chunks_of(b"new"))
    await drive.tree.trash(work, old, ALICE)
    await drive.tree.trash(work, new, ALICE)
    await drive.db.execute(  # trashed 31 days ago
        "UPDATE drive_node SET trashed_at = trashed_at - $2 WHERE id = $1",
        old.id,
        31 * 86_400_000,
    )
    assert await drive.empty_expired_trash(30) == (1, 3)
    assert [n.name for n in await drive.tree.trashed(work)] == ["new.txt"]
    assert await drive.empty_expired_trash(30) == (0, 0)


async def test_an_upload_a_crash_interrupted_is_finished_at_start_up(drive):
    """Content stored, then a crash before its version was recorded: it goes. Content
    noted as pending that a version does use (a crash just after recording) stays."""
    work = await drive.access.create_folder(ALICE, "Work")
    kept, _ = await drive.upload(ALICE, work, "kept.txt", chunks_of(b"kept"))
    assert await drive.db.fetchval("SELECT COUNT(*) FROM drive_pending_content") == 0
    writer = await drive.blobs.writer()
    await writer.write(b"stored, never recorded")
    orphan = await writer.commit()
    for sha256 in (orphan.sha256, kept.sha256):  # what upload notes before recording
        await drive.db.execute(
            "INSERT INTO drive_pending_content (sha256, stored_at) VALUES ($1, 0)", sha256
        )
    assert await drive.finish_interrupted_uploads() == 1
    assert await drive.blobs.hashes() == [kept.sha256]
    assert await read_all(drive, kept) == b"kept"
    assert await drive.db.fetchval("SELECT COUNT(*) FROM drive_pending_content") == 0
    assert await drive.unused_content() == 0


async def test_content_that_only_looks_unused_is_kept_and_counted(drive):
    """A database without the drive's rows (a wrong database.url, an old backup) must
    not cost the storage its files."""
    writer = await drive.blobs.writer()
    await writer.write(b"recorded in some other database")
    stranger = await writer.commit()
    assert await drive.finish_interrupted_uploads() == 0
    assert await drive.blobs.hashes() == [stranger.sha256]
    assert await drive.unused_content() == 1


async def test_a_file_moves_to_another_folder_without_copying_its_bytes(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    team = await drive.access.create_folder(ALICE, "Team")
    old, _ = await drive.upload(ALICE, work, "plan.txt", chunks_of(b"draft"))
    node, _ = await drive.upload(ALICE, work, "plan.txt", chunks_of(b"final plan"))
    root = await drive.tree.lookup(team, [])
    moved = await drive.move_to_folder(ALICE, work, node, team, root, "plan.txt")
    assert (moved.folder_id, moved.name, moved.version_no) == (team.id, "plan.txt", 1)
    assert await read_all(drive, moved) == b"final plan"
    assert [n.name for n in await drive.tree.trashed(work)] == ["plan.txt"]  # restorable
    assert len(await drive.tree.versions(node)) == 2  # its history stays with it
    assert len(await drive.blobs.hashes()) == 2  # no content was copied
    assert (await drive.quota(ALICE)).used == 5 + 10 + 10  # until the trash is emptied
    await drive.empty_trash(ALICE, work)
    assert (await drive.quota(ALICE)).used == 10
    assert await read_all(drive, moved) == b"final plan"


async def test_a_folder_moves_with_what_it_holds(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    team = await drive.access.create_folder(ALICE, "Team")
    await drive.tree.mkdir(work, ["q3", "notes"], ALICE)
    await drive.upload(ALICE, work, "q3/budget.xlsx", chunks_of(b"numbers"))
    await drive.upload(ALICE, work, "q3/notes/monday.txt", chunks_of(b"monday"))
    q3 = await drive.tree.lookup(work, ["q3"])
    archive = await drive.tree.mkdir(team, ["archive"], ALICE)
    moved = await drive.move_to_folder(ALICE, work, q3, team, archive, "q3-2026")
    assert await drive.tree.path_of(moved) == "archive/q3-2026"
    paths = sorted(path for path, _ in await drive.tree.walk(team))
    assert paths == [
        "archive",
        "archive/q3-2026",
        "archive/q3-2026/budget.xlsx",
        "archive/q3-2026/notes",
        "archive/q3-2026/notes/monday.txt",
    ]
    monday = await drive.tree.lookup(team, ["archive", "q3-2026", "notes", "monday.txt"])
    assert await read_all(drive, monday) == b"monday"
    assert [n.name for n in await drive.tree.trashed(work)] == ["q3"]


async def test_a_move_to_another_folder_is_refused_whole_over_quota_on_a_clash_or_as_viewer(
    drive,
):
    work = await drive.access.create_folder(ALICE, "Work")
    bobs = await drive.access.create_folder(BOB, "Bob's")
    await drive.access.invite(bobs, BOB, ALICE, "viewer")
    await drive.access.membership_changed(bobs, ALICE, "join")
    node, _ = await drive.upload(ALICE, work, "a.txt", chunks_of(b"a"))
    root = await drive.tree.lookup(bobs, [])
    with pytest.raises(Denied, match="viewer"):
        await drive.move_to_folder(ALICE, work, node, bobs, root, "a.txt")

    team = await drive.access.create_folder(ALICE, "Team")
    team_root = await drive.tree.lookup(team, [])
    await drive.upload(ALICE, team, "A.TXT", chunks_of(b"already"))
    with pytest.raises(Conflict, match="already exists in Team"):
        await drive.move_to_folder(ALICE, work, node, team, team_root, "a.txt")
    big, _ = await drive.upload(ALICE, work, "big.bin", chunks_of(b"x" * 600_000))
    with pytest.raises(QuotaExceeded, match="does not fit"):
        await drive.move_to_folder(ALICE, work, big, team, team_root, "big.bin")
    assert [n.name for n in await drive.tree.trashed(work)] == []  # nothing changed
    assert sorted(p for p, _ in await drive.tree.walk(team)) == ["A.TXT"]


async def test_moving_audio_into_a_folder_shared_with_others_is_sharing_it(drive):
    work = await drive.access.create_folder(ALICE, "Work")
    team = await drive.access.create_folder(ALICE, "Team")
    await drive.access.invite(team, ALICE, BOB, "viewer")
    await drive.access.membership_changed(team, BOB, "join")
    song, _ = await drive.upload(ALICE, work, "song.txt", chunks_of(MP3))
    root = await drive.tree.lookup(team, [])
    with pytest.raises(ContentRefused, match="sharing Team/tune.txt is refused: it is audio"):
        await drive.move_to_folder(ALICE, work, song, team, root, "tune.txt")
    assert [n.name for n in await drive.tree.trashed(work)] == []
