"""The PC sync client end to end: a local folder and a drive folder on a real bridge,
changed on both sides, offline, interrupted, and guarded against mistakes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import unicodedata

import pytest

from anywhere.plugins.drive.sync.credentials import Credentials
from anywhere.plugins.drive.sync.engine import NeedsForce, Sync
from anywhere.plugins.drive.sync.lock import Locked
from anywhere.plugins.drive.sync.remote import Remote, Unreachable

from .people import Api

pytestmark = pytest.mark.e2e
CONFLICT = re.compile(r"^b \(conflicted copy laptop \d{4}-\d\d-\d\d \d{6}\)\.txt$")


class Pc:
    """A person's PC: a local folder synced with one drive folder."""

    def __init__(self, stack, person, api, folder_id, root) -> None:
        self.stack, self.person, self.api, self.folder, self.root = (
            stack, person, api, folder_id, root,
        )  # fmt: skip
        root.mkdir(exist_ok=True)

    async def sync(self, **kwargs):
        credentials = Credentials(
            self.stack.synapse.url, self.stack.bridge.url, self.person.id, self.person.token, "D"
        )
        remote = Remote(credentials)
        try:
            return await Sync(remote, self.folder, self.root, device="laptop", **kwargs).run()
        finally:
            await remote.close()

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def files(self) -> set[str]:
        return {
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and ".anywhere-sync" not in p.parts
        }

    async def server_put(self, path: str, data: bytes) -> None:
        status, _, body = await self.api.call(
            "PUT", f"/folders/{self.folder}/files/{path}", data=data
        )
        assert status in (200, 201), body

    async def server_get(self, path: str) -> bytes | None:
        status, _, body = await self.api.call("GET", f"/folders/{self.folder}/files/{path}")
        return body if status == 200 else None

    async def server_files(self) -> dict[str, dict]:
        _, _, tree = await self.api.json("GET", f"/folders/{self.folder}/tree")
        return {n["path"]: n for n in tree["nodes"] if n["kind"] == "file"}


@pytest.fixture
def pc(person, drive_stack, tmp_path):
    async def make(name: str = "Sync") -> Pc:
        alice = await person()
        api = Api(drive_stack, alice)
        return Pc(drive_stack, alice, api, await api.folder(name), tmp_path / "local")

    return make


async def test_edits_on_each_side_reach_the_other(pc):
    box = await pc()
    box.write("a.txt", b"local a")
    box.write("docs/b.txt", b"local b")
    await box.server_put("c.txt", b"server c")
    report = await box.sync()
    assert report.done == {"upload": 2, "download": 1, "mkdir_remote": 1}
    assert box.files() == {"a.txt", "docs/b.txt", "c.txt"}
    assert await box.server_get("docs/b.txt") == b"local b"

    box.write("a.txt", b"local a, edited")
    await box.server_put("c.txt", b"server c, edited")
    report = await box.sync()
    assert report.done == {"upload": 1, "download": 1}
    assert await box.server_get("a.txt") == b"local a, edited"
    assert box.read("c.txt") == b"server c, edited"
    assert (await box.sync()).summary() == "Everything is in sync."


async def test_identical_edits_need_nothing_and_different_ones_make_a_conflicted_copy(pc):
    box = await pc()
    box.write("a.txt", b"start")
    box.write("b.txt", b"start")
    await box.sync()
    box.write("a.txt", b"same edit")
    await box.server_put("a.txt", b"same edit")
    box.write("b.txt", b"mine")
    await box.server_put("b.txt", b"theirs")
    report = await box.sync()
    assert report.done == {"record": 1, "conflict": 1}
    copies = [f for f in box.files() if CONFLICT.match(f)]
    assert len(copies) == 1, box.files()
    assert box.read("b.txt") == b"theirs"  # the server version keeps the name
    assert box.read(copies[0]) == b"mine"
    assert await box.server_get(copies[0]) == b"mine"  # and the copy is uploaded
    assert box.read("a.txt") == b"same edit"
    assert (await box.sync()).summary() == "Everything is in sync."


async def test_an_edit_beats_a_delete_on_either_side(pc):
    box = await pc()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        box.write(name, name.encode())
    await box.sync()
    box.write("a.txt", b"edited here")
    await box.api.call("DELETE", f"/folders/{box.folder}/files/a.txt")
    (box.root / "b.txt").unlink()
    await box.server_put("b.txt", b"edited there")
    await box.sync()
    assert await box.server_get("a.txt") == b"edited here"
    assert box.read("b.txt") == b"edited there"


async def test_delete_against_delete_and_renames_on_each_side(pc):
    box = await pc()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt"):
        box.write(name, name.encode() * 10)
    await box.sync()
    before = await box.server_files()
    (box.root / "a.txt").unlink()
    await box.api.call("DELETE", f"/folders/{box.folder}/files/a.txt")
    (box.root / "b.txt").rename(box.root / "b-renamed.txt")
    await box.api.json(
        "POST", f"/folders/{box.folder}/move", json={"from": "c.txt", "to": "c-moved.txt"}
    )
    report = await box.sync()
    assert report.done == {"forget": 1, "rename_remote": 1, "rename_local": 1}
    after = await box.server_files()
    assert set(after) == {"b-renamed.txt", "c-moved.txt", "d.txt", "e.txt"}
    assert after["b-renamed.txt"]["id"] == before["b.txt"]["id"]  # moved, not re-uploaded
    assert box.files() == set(after)
    assert box.read("c-moved.txt") == b"c.txt" * 10


async def test_offline_edits_are_sent_when_the_connection_returns(pc, drive_stack):
    box = await pc()
    box.write("a.txt", b"first")
    await box.sync()
    drive_stack.bridge.stop()
    try:
        box.write("a.txt", b"written offline")
        box.write("new.txt", b"also offline")
        with pytest.raises(Unreachable, match="cannot reach the drive"):
            await box.sync()
    finally:
        await asyncio.to_thread(drive_stack.bridge.start)
    report = await box.sync()
    assert report.done == {"upload": 2}
    assert await box.server_get("a.txt") == b"written offline"
    assert await box.server_get("new.txt") == b"also offline"


async def test_an_interrupted_run_resumes_where_it_stopped(pc, monkeypatch):
    box = await pc()
    for i in range(5):
        box.write(f"f{i}.txt", f"file {i}".encode())
    real_upload, calls = Remote.upload, []

    async def failing_upload(self, *args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise Unreachable("the network went away")
        return await real_upload(self, *args, **kwargs)

    monkeypatch.setattr(Remote, "upload", failing_upload)
    with pytest.raises(Unreachable):
        await box.sync()
    assert not (box.root / ".anywhere-sync" / "lock").exists()
    monkeypatch.setattr(Remote, "upload", real_upload)
    report = await box.sync()
    assert report.done == {"upload": 3}
    server = await box.server_files()
    assert set(server) == {f"f{i}.txt" for i in range(5)}
    assert all(n["version"] == 1 for n in server.values())  # nothing sent twice


async def test_a_mass_delete_or_an_empty_side_stops_and_asks_for_force(pc):
    box = await pc()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        box.write(name, name.encode())
    await box.sync()
    for name in ("a.txt", "b.txt", "c.txt"):
        (box.root / name).unlink()
    with pytest.raises(NeedsForce, match="would delete 3 of 4 files.*--force"):
        await box.sync()
    assert len(await box.server_files()) == 4  # nothing was changed
    (box.root / "d.txt").unlink()
    with pytest.raises(NeedsForce, match="the local folder is empty"):
        await box.sync()
    report = await box.sync(force=True)
    assert report.done == {"delete_remote": 4}
    assert await box.server_files() == {}


async def test_a_running_sync_holds_a_lock_and_a_stale_lock_is_taken_over(pc):
    box = await pc()
    box.write("a.txt", b"a")
    lock = box.root / ".anywhere-sync" / "lock"
    lock.parent.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(
            Locked, match=f"another sync of this folder is running \\(pid {sleeper.pid}"
        ):
            await box.sync()
    finally:
        sleeper.kill()
        sleeper.wait()
    report = await box.sync()  # the holder is gone: its lock is stale
    assert any("took over a stale lock" in note for note in report.notes)
    assert report.done == {"upload": 1}
    assert not lock.exists()


async def test_the_command_line_logs_in_and_syncs(person, drive_stack, tmp_path):
    alice = await person()
    api = Api(drive_stack, alice)
    folder_id = await api.folder("Laptop")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    password = tmp_path / "pw"
    password.write_text("correct horse")
    anywhere = [sys.executable, "-m", "anywhere"]
    login = subprocess.run(
        [*anywhere, "drive", "login", "--homeserver", drive_stack.synapse.url, "--user",
         alice.id, "--bridge", drive_stack.bridge.url, "--password-file", str(password)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert f"Logged in as {alice.id}" in login.stdout
    stored = tmp_path / "config" / "anywhere" / "drive.json"
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    local = tmp_path / "laptop"
    local.mkdir()
    (local / "hello.txt").write_text("hello from the PC")
    run = subprocess.run(
        [*anywhere, "drive", "sync", str(local), "Laptop"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "upload: 1" in run.stdout
    _, _, got = await api.call("GET", f"/folders/{folder_id}/files/hello.txt")
    assert got == b"hello from the PC"


async def test_watch_mode_keeps_syncing_and_catches_up_after_an_outage(pc, drive_stack, tmp_path):
    box = await pc("Watched")
    config = tmp_path / "config" / "anywhere"
    config.mkdir(parents=True)
    (config / "drive.json").write_text(
        json.dumps(
            {
                "homeserver": drive_stack.synapse.url,
                "bridge_url": drive_stack.bridge.url,
                "user_id": box.person.id,
                "access_token": box.person.token,
                "device_id": "W",
            }
        )
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "watch.log"
    log = open(log_path, "w")  # noqa: SIM115 - the watcher writes it until it stops
    watcher = subprocess.Popen(
        [sys.executable, "-m", "anywhere.plugins.drive.sync", "sync", str(box.root), "Watched",
         "--watch", "--interval", "0.3"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    async def eventually(check, what: str) -> None:
        for _ in range(150):
            if await check():
                return
            await asyncio.sleep(0.2)
        tail = "\n".join(log_path.read_text().splitlines()[-20:])
        raise AssertionError(f"{what} never happened; the watcher said:\n{tail}")

    try:
        box.write("live.txt", b"typed on the PC")
        await eventually(lambda: _equals(box.server_get("live.txt"), b"typed on the PC"), "upload")
        await box.server_put("from-phone.txt", b"sent from a phone")
        await eventually(lambda: _true((box.root / "from-phone.txt").exists()), "download")
        drive_stack.bridge.stop()
        try:
            box.write("offline.txt", b"written while the bridge was down")
            await asyncio.sleep(1.0)  # a few failed rounds
        finally:
            await asyncio.to_thread(drive_stack.bridge.start)
        await eventually(
            lambda: _equals(box.server_get("offline.txt"), b"written while the bridge was down"),
            "catching up after the outage",
        )
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        log.close()
    output = log_path.read_text()
    assert "offline: cannot reach the drive" in output
    assert "Your local changes are kept" in output
    assert watcher.returncode == 130  # stopped cleanly
    assert not (box.root / ".anywhere-sync" / "lock").exists()


async def _equals(pending, expected: bytes) -> bool:
    return await pending == expected


async def _true(value: bool) -> bool:
    return value


async def test_decomposed_names_and_names_differing_by_case_are_handled(pc):
    box = await pc()
    decomposed = unicodedata.normalize("NFD", "Café.txt")
    box.write(decomposed, b"written on a Mac")
    box.write("Report.txt", b"one")
    box.write("report.txt", b"two")
    box.write("ok.txt", b"fine")
    report = await box.sync()
    assert report.done == {"upload": 3}
    assert any("report.txt: it differs from Report.txt only by case" in n for n in report.notes)
    assert await box.server_get("Café.txt") == b"written on a Mac"
    assert set(await box.server_files()) == {"Café.txt", "Report.txt", "ok.txt"}
    await box.server_put("Café.txt", b"edited on the server")
    report = await box.sync()
    assert report.done == {"download": 1}
    assert box.read(decomposed) == b"edited on the server"  # the local name is kept
    assert box.files() == {decomposed, "Report.txt", "report.txt", "ok.txt"}
    assert (await box.sync()).summary() == "Everything is in sync."


async def test_a_folder_renamed_locally_is_moved_on_the_server(pc):
    box = await pc()
    box.write("docs/a.txt", b"a" * 20)
    box.write("docs/b.txt", b"b" * 20)
    box.write("keep.txt", b"k")
    box.write("also.txt", b"x")
    box.write("more.txt", b"y")
    await box.sync()
    before = await box.server_files()
    (box.root / "docs").rename(box.root / "papers")
    report = await box.sync()
    assert report.done == {"rename_remote": 2, "delete_remote_dir": 1, "mkdir_remote": 1}
    after = await box.server_files()
    assert set(after) == {"papers/a.txt", "papers/b.txt", "keep.txt", "also.txt", "more.txt"}
    assert after["papers/a.txt"]["id"] == before["docs/a.txt"]["id"]
    _, _, tree = await box.api.json("GET", f"/folders/{box.folder}/tree")
    assert "docs" not in {n["path"] for n in tree["nodes"]}
    assert (await box.sync()).summary() == "Everything is in sync."

    await box.api.json(  # and a folder renamed on the server
        "POST", f"/folders/{box.folder}/move", json={"from": "papers", "to": "archive"}
    )
    report = await box.sync()
    assert report.done == {"rename_local": 2, "mkdir_local": 1, "delete_local_dir": 1}
    assert box.files() == {"archive/a.txt", "archive/b.txt", "keep.txt", "also.txt", "more.txt"}
    assert not (box.root / "papers").exists()
    assert (await box.sync()).summary() == "Everything is in sync."


async def test_a_linked_folder_is_never_written_through_and_its_files_stay_on_the_server(
    pc, tmp_path
):
    """``Team/docs -> ~/.ssh``: an editor's docs/authorized_keys must not land in ~/.ssh,
    and must not be deleted on the server by the next sync either."""
    box = await pc()
    outside = tmp_path / "dot-ssh"
    outside.mkdir()
    (outside / "authorized_keys").write_bytes(b"the person's own key")
    box.write("a.txt", b"a")
    box.write("kept/old.txt", b"synced while kept was a real folder")
    await box.sync()
    (box.root / "docs").symlink_to(outside, target_is_directory=True)
    await box.api.json("POST", f"/folders/{box.folder}/mkdir", json={"path": "docs"})
    await box.server_put("docs/authorized_keys", b"ssh-ed25519 AAAA mallory")
    (box.root / "kept" / "old.txt").unlink()
    (box.root / "kept").rmdir()
    (box.root / "kept").symlink_to(outside, target_is_directory=True)

    report = await box.sync()
    assert sorted(os.listdir(outside)) == ["authorized_keys"]
    assert (outside / "authorized_keys").read_bytes() == b"the person's own key"
    assert any(
        s.startswith("docs/authorized_keys: docs is a symbolic link here") for s in report.skipped
    ), report
    assert any(s.startswith("kept/old.txt: kept is a symbolic link here") for s in report.skipped)

    report = await box.sync()  # the next sync deletes nothing on the server
    assert not {"delete_remote", "delete_remote_dir"} & set(report.done), report
    assert await box.server_get("docs/authorized_keys") == b"ssh-ed25519 AAAA mallory"
    assert await box.server_get("kept/old.txt") == b"synced while kept was a real folder"
    assert (outside / "authorized_keys").read_bytes() == b"the person's own key"

    (box.root / "docs").unlink()  # the link replaced by a real folder: it syncs again
    report = await box.sync()
    assert box.read("docs/authorized_keys") == b"ssh-ed25519 AAAA mallory"
    assert not any(s.startswith("docs/") for s in report.skipped)


async def test_the_sync_state_folder_name_is_refused_over_http_and_from_chat(person, drive_stack):
    alice = await person()
    api = Api(drive_stack, alice)
    room = await alice.new_folder("Reserved")
    _, _, folders = await api.json("GET", "/folders")
    folder = next(f["id"] for f in folders["folders"] if f["name"] == "Reserved")
    for method, path, kwargs in [
        ("PUT", f"/folders/{folder}/files/.anywhere-sync/manifest.db", {"data": b"x"}),
        ("PUT", f"/folders/{folder}/files/sub/.Anywhere-Sync", {"data": b"x"}),
        ("POST", f"/folders/{folder}/mkdir", {"json": {"path": ".anywhere-sync"}}),
    ]:
        status, _, body = await api.json(method, path, **kwargs)
        assert status == 400, (path, body)
        assert "is reserved: the PC sync client keeps its own state" in body["error"], body
    _, _, tree = await api.json("GET", f"/folders/{folder}/tree")
    assert tree["nodes"] == []  # nothing was made, not even "sub"
    await alice.ask(room, "!drive mkdir Reserved/.anywhere-sync", "is reserved")
    answer = await alice.saved(room, await alice.send_file(room, ".anywhere-sync", b"lock"))
    assert answer.startswith("Not saved:") and "is reserved" in answer


async def test_on_a_disk_that_folds_case_a_new_local_file_is_kept_as_a_conflicted_copy(pc):
    """A new remote Report.txt and a new local report.txt are one file on macOS and
    Windows: the local one becomes a conflicted copy instead of being overwritten. (Linux
    disks tell them apart, so the test tells the sync the disk folds case.)"""
    box = await pc()
    await box.server_put("Report.txt", b"the team's report")
    box.write("report.txt", b"my own notes")
    report = await box.sync(case_insensitive=True)
    assert report.done == {"conflict": 1}, report
    copies = [f for f in box.files() if f.startswith("report (conflicted copy laptop ")]
    assert len(copies) == 1, box.files()
    assert box.read(copies[0]) == b"my own notes"
    assert await box.server_get(copies[0]) == b"my own notes"
    assert box.read("Report.txt") == b"the team's report"
    assert box.files() == {"Report.txt", copies[0]}
    assert (await box.sync(case_insensitive=True)).summary() == "Everything is in sync."
