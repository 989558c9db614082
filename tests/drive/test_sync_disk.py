"""The sync's local writes (LocalFolder): inside the folder, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anywhere.plugins.drive.sync.disk import LocalFolder, Unsafe
from anywhere.plugins.drive.sync.local import folds_case


@pytest.fixture
def folder(tmp_path: Path) -> tuple[LocalFolder, Path, Path]:
    root, outside = tmp_path / "Team", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "docs").symlink_to(outside, target_is_directory=True)
    (root / "note.txt").write_text("a file")
    (root / "link.txt").symlink_to(outside / "target.txt")
    return LocalFolder(root), root, outside


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "a/../../b", "a//b", ".", "", "a/./b", "x\x00y"]
)
def test_paths_that_could_leave_the_folder_are_refused(folder, path):
    disk, root, _ = folder
    with pytest.raises(Unsafe):
        disk.create(path)
    with pytest.raises(Unsafe):
        disk.mkdir(path)


def test_nothing_is_written_through_a_linked_folder(folder):
    disk, root, outside = folder
    (root / "src.txt").write_text("moved?")
    with pytest.raises(Unsafe, match="docs is a symbolic link here"):
        disk.create("docs/authorized_keys")
    with pytest.raises(Unsafe, match="docs is a symbolic link here"):
        disk.move("src.txt", "docs/sub/authorized_keys")
    with pytest.raises(Unsafe, match="docs is a symbolic link here"):
        disk.mkdir("docs/new")
    with pytest.raises(Unsafe, match="note.txt is a file here"):
        disk.create("note.txt/inside")
    assert os.listdir(outside) == []
    assert (root / "src.txt").read_text() == "moved?"
    with pytest.raises(Unsafe, match="docs is a symbolic link here"):
        disk.lstat("docs/anything")
    assert disk.lstat("nothing/here") is None and not disk.is_empty_dir("docs")


def test_a_link_at_the_destination_is_refused_not_replaced(folder):
    disk, root, outside = folder
    (root / "src.txt").write_text("new")
    with pytest.raises(Unsafe, match="link.txt is a symbolic link here"):
        disk.move("src.txt", "link.txt")
    assert (root / "link.txt").is_symlink()


def test_writes_inside_the_folder_work(folder):
    disk, root, _ = folder
    with disk.create("a/b/new.txt") as handle:
        handle.write(b"hello")
    disk.move("a/b/new.txt", "c/moved.txt")
    assert (root / "c" / "moved.txt").read_bytes() == b"hello"
    disk.mkdir("a/b/c")
    assert disk.is_empty_dir("a/b/c")
    disk.rmdir("a/b/c")
    assert disk.lstat("a/b/c") is None
    disk.unlink("c/moved.txt")
    assert disk.lstat("c/moved.txt") is None


def test_this_linux_disk_is_found_to_tell_case_apart(tmp_path):
    assert folds_case(tmp_path) is False
    assert list(tmp_path.iterdir()) == []  # the probe is gone
