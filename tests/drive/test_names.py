"""Drive names and paths: what is refused, with a reason a person can act on."""

from __future__ import annotations

import unicodedata

import pytest

from anywhere.plugins.drive.names import InvalidName, check_name, name_key, split_path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("a\x00b", "NUL"),
        ("a//b", "empty part"),
        ("a\\b", "separate folders with '/'"),
        ("", "empty"),
    ],
)
def test_paths_that_leave_the_folder_or_are_malformed_are_refused(path, reason):
    with pytest.raises(InvalidName, match=reason) as info:
        split_path(path)
    assert str(info.value)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("CON", "reserved device name"),
        ("nul.txt", "reserved device name"),
        ("Com1.log", "reserved device name"),
        ("report?.pdf", "Windows cannot hold"),
        ('say "hi".txt', "Windows cannot hold"),
        ("time 10:00.txt", "Windows cannot hold"),
        ("trailing.", "ends with a space or a dot"),
        ("trailing ", "ends with a space or a dot"),
        ("bell\x07", "control character"),
        ("x" * 256, "longer than 255 bytes"),
        ("한" * 86, "longer than 255 bytes"),  # 258 bytes in UTF-8
    ],
)
def test_names_windows_or_macos_cannot_hold_are_refused(name, reason):
    with pytest.raises(InvalidName, match=reason):
        check_name(name)


def test_good_paths_are_split_and_normalised_to_nfc():
    nfd = unicodedata.normalize("NFD", "Café")
    assert split_path(f"Reports 2024/{nfd}.txt") == ["Reports 2024", "Café.txt"]
    assert split_path("docs/") == ["docs"]
    assert split_path("", allow_empty=True) == []
    assert check_name("회의록 v2.hwp") == "회의록 v2.hwp"


def test_names_differing_only_by_case_or_normalisation_share_a_key():
    nfc, nfd = "Café", unicodedata.normalize("NFD", "CAFÉ")
    assert nfc != nfd
    assert name_key(nfc) == name_key(nfd)
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("report") != name_key("report2")


@pytest.mark.parametrize(
    "path", [".anywhere-sync", ".anywhere-sync/manifest.db", "a/.Anywhere-Sync", ".ANYWHERE-SYNC"]
)
def test_the_sync_clients_state_folder_name_is_reserved_at_any_depth(path):
    with pytest.raises(InvalidName, match="is reserved: the PC sync client keeps its own state"):
        split_path(path)
    assert split_path("a/anywhere-sync") == ["a", "anywhere-sync"]  # only that exact name
