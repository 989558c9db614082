"""The sync's three-way comparison, rule by rule (no server, no disk)."""

from __future__ import annotations

import pytest

from anywhere.plugins.drive.names import name_key
from anywhere.plugins.drive.sync.engine import conflict_name
from anywhere.plugins.drive.sync.local import LocalItem
from anywhere.plugins.drive.sync.manifest import Entry
from anywhere.plugins.drive.sync.plan import make_plan


def entry(path: str, sha: str, node: str = "n1", rev: int = 2) -> Entry:
    return Entry(path, node, "file", rev, sha, 1, 100)


def here(path: str, sha: str, mtime: int = 100) -> LocalItem:
    return LocalItem(path, "file", 1, mtime, sha)


def there(sha: str, node: str = "n1", rev: int = 2) -> dict:
    return {"id": node, "kind": "file", "revision": rev, "sha256": sha, "size": 1}


def plan_for(manifest, local, remote) -> list[tuple[str, str]]:
    plan = make_plan(manifest, local, remote, lambda item: item.sha256)
    return [(a.kind, a.path) for a in plan.actions]


@pytest.mark.parametrize(
    ("m", "l", "r", "expected"),
    [
        ("x", "x", "x", None),  # nothing changed
        ("x", "y", "x", "upload"),  # changed here
        ("x", "x", "y", "download"),  # changed there
        ("x", "y", "y", "record"),  # both changed the same way
        ("x", "y", "z", "conflict"),  # both changed differently
        ("x", None, "x", "delete_remote"),  # deleted here
        ("x", "x", None, "delete_local"),  # deleted there
        ("x", None, "y", "download"),  # deleted here, edited there: the edit wins
        ("x", "y", None, "upload"),  # edited here, deleted there: the edit wins
        ("x", None, None, "forget"),  # deleted on both sides
        (None, "y", None, "upload"),  # new here
        (None, None, "y", "download"),  # new there
        (None, "y", "y", "record"),  # new on both sides, the same
        (None, "y", "z", "conflict"),  # new on both sides, different
    ],
)
def test_each_combination_of_changes_gets_its_action(m, l, r, expected):  # noqa: E741
    manifest = {"a.txt": entry("a.txt", m)} if m else {}
    local = {"a.txt": here("a.txt", l)} if l else {}
    remote = {"a.txt": there(r, node="n1" if m else "n9")} if r else {}
    actions = plan_for(manifest, local, remote)
    assert actions == ([(expected, "a.txt")] if expected else [])


def test_a_rename_on_either_side_is_replayed_not_copied():
    manifest = {"old.txt": entry("old.txt", "x"), "b.txt": entry("b.txt", "y", node="n2")}
    local = {"new.txt": here("new.txt", "x"), "b.txt": here("b.txt", "y")}
    remote = {"old.txt": there("x"), "moved.txt": there("y", node="n2", rev=3)}
    assert sorted(plan_for(manifest, local, remote)) == [
        ("rename_local", "b.txt"),
        ("rename_remote", "old.txt"),
    ]


def test_only_a_changed_mtime_is_recorded_without_transfer():
    manifest = {"a.txt": entry("a.txt", "x")}
    assert plan_for(manifest, {"a.txt": here("a.txt", "x", mtime=999)}, {"a.txt": there("x")}) == [
        ("record", "a.txt")
    ]


def test_conflicted_copies_keep_the_extension_and_name_the_device():
    assert conflict_name("docs/report.final.pdf", "laptop", 0).startswith(
        "docs/report.final (conflicted copy laptop "
    )
    assert conflict_name("docs/report.final.pdf", "laptop", 0).endswith(").pdf")
    assert conflict_name("Makefile", "pc", 0).startswith("Makefile (conflicted copy pc ")


def test_on_a_disk_that_folds_case_a_server_file_does_not_overwrite_a_local_one():
    local = {"report.txt": here("report.txt", "mine")}
    remote = {"Report.txt": there("theirs")}
    plan = make_plan({}, local, remote, lambda item: item.sha256, fold=name_key)
    assert [(a.kind, a.path, a.local.path) for a in plan.actions] == [
        ("conflict", "Report.txt", "report.txt")
    ]
    # where the disk tells them apart, they are two files
    assert plan_for({}, local, remote) == [("download", "Report.txt"), ("upload", "report.txt")]


def test_on_a_disk_that_folds_case_a_case_only_rename_is_still_a_rename():
    manifest = {"report.txt": entry("report.txt", "x")}
    local = {"report.txt": here("report.txt", "x")}
    remote = {"Report.txt": there("x")}
    plan = make_plan(manifest, local, remote, lambda item: item.sha256, fold=name_key)
    assert [(a.kind, a.path, a.dest) for a in plan.actions] == [
        ("rename_local", "report.txt", "Report.txt")
    ]
