"""Conditional requests on the drive's files routes, end to end (RFC 9110 section 13):
If-Match, If-None-Match, If-Range; strong and weak validators, ``*``, lists; HEAD as GET."""

from __future__ import annotations

import pytest

from .people import Api

pytestmark = pytest.mark.e2e

OLD, NEW = b"the first version", b"the second version, longer"


@pytest.fixture
async def two_versions(person, drive_stack):
    """A file with two versions: ``(api, file path, old ETag, current ETag)``."""
    alice = await person()
    a = Api(drive_stack, alice)
    fid = await a.folder("Conditional")
    path = f"/folders/{fid}/files/doc.txt"
    _, first, _ = await a.call("PUT", path, data=OLD)
    _, second, _ = await a.call("PUT", path, data=NEW)
    assert first["ETag"] != second["ETag"]
    return a, path, first["ETag"], second["ETag"]


async def test_get_with_if_match_naming_another_version_is_412(two_versions):
    a, path, old, current = two_versions
    status, _, body = await a.json("GET", path, headers={"If-Match": old})
    assert status == 412 and body["errcode"] == "DRIVE_STALE_REVISION"
    assert f"it is at {current} now" in body["error"]
    for matching in (current, f'"999", {current}', "*"):
        status, headers, got = await a.call("GET", path, headers={"If-Match": matching})
        assert (status, got, headers["ETag"]) == (200, NEW, current), matching
    weak = f"W/{current}"  # If-Match compares strongly: a weak tag never matches
    status, _, _ = await a.call("GET", path, headers={"If-Match": weak})
    assert status == 412


async def test_get_with_a_matching_if_none_match_is_304(two_versions):
    a, path, old, current = two_versions
    for matching in (current, f"W/{current}", f"{old}, {current}", "*"):
        status, headers, got = await a.call("GET", path, headers={"If-None-Match": matching})
        assert (status, got, headers["ETag"]) == (304, b"", current), matching
    status, _, got = await a.call("GET", path, headers={"If-None-Match": old})
    assert (status, got) == (200, NEW)


async def test_head_answers_like_get_without_the_body(two_versions):
    a, path, old, current = two_versions
    status, headers, got = await a.call("HEAD", path)
    assert (status, got, headers["ETag"]) == (200, b"", current)
    assert int(headers["Content-Length"]) == len(NEW)
    status, headers, _ = await a.call("HEAD", path, headers={"Range": "bytes=0-3"})
    assert status == 206 and headers["Content-Range"] == f"bytes 0-3/{len(NEW)}"
    status, _, _ = await a.call("HEAD", path, headers={"If-None-Match": current})
    assert status == 304
    status, _, _ = await a.call("HEAD", path, headers={"If-Match": old})
    assert status == 412


async def test_a_stale_if_range_gets_the_whole_current_file_never_a_splice(two_versions):
    a, path, old, current = two_versions
    # a download of the first version broke off after 4 bytes; it resumes with If-Range
    resume = {"Range": "bytes=4-", "If-Range": old}
    status, headers, got = await a.call("GET", path, headers=resume)
    assert (status, got) == (200, NEW) and "Content-Range" not in headers
    for stale in (f"W/{current}", "Tue, 01 Dec 2026 10:00:00 GMT"):  # weak tag, date
        status, _, got = await a.call("GET", path, headers={**resume, "If-Range": stale})
        assert (status, got) == (200, NEW), stale
    status, headers, got = await a.call("GET", path, headers={**resume, "If-Range": current})
    assert (status, got) == (206, NEW[4:])
    assert headers["Content-Range"] == f"bytes 4-{len(NEW) - 1}/{len(NEW)}"


async def test_writes_with_an_if_match_that_cannot_match_are_412_and_change_nothing(two_versions):
    a, path, old, current = two_versions
    for impossible in ('"bogus"', "bogus", f"W/{current}", old):
        status, _, body = await a.json("PUT", path, data=b"lost?", headers={"If-Match": impossible})
        assert status == 412 and body["errcode"] == "DRIVE_STALE_REVISION", impossible
        status, _, body = await a.json("DELETE", path, headers={"If-Match": impossible})
        assert status == 412 and body["errcode"] == "DRIVE_STALE_REVISION", impossible
    status, _, body = await a.json("PUT", path, data=b"x", headers={"If-Match": '"bogus"'})
    _, _, got = await a.call("GET", path)
    assert got == NEW
    # If-Match: * needs something there: no file is created
    missing = path.replace("doc.txt", "new.txt")
    status, _, _ = await a.json("PUT", missing, data=b"new", headers={"If-Match": "*"})
    assert status == 412
    status, _, _ = await a.call("GET", missing)
    assert status == 404


async def test_writes_with_a_matching_list_or_star_go_ahead(two_versions):
    a, path, old, current = two_versions
    status, headers, node = await a.json(
        "PUT", path, data=b"third", headers={"If-Match": f"{old}, {current}"}
    )
    assert status == 201 and node["version"] == 3
    status, headers, node = await a.json("PUT", path, data=b"fourth", headers={"If-Match": "*"})
    assert status == 201 and node["version"] == 4
    status, _, trashed = await a.json("DELETE", path, headers={"If-Match": headers["ETag"]})
    assert status == 200 and "trashed_at" in trashed


async def test_writes_with_a_matching_if_none_match_are_412(two_versions):
    a, path, old, current = two_versions
    # the regression kept: If-None-Match: * over an existing file
    status, _, body = await a.json("PUT", path, data=b"x", headers={"If-None-Match": "*"})
    assert status == 412 and body["errcode"] == "DRIVE_PRECONDITION_FAILED"
    for matching in (current, f"W/{current}", f'"1", {current}'):
        status, _, _ = await a.json("PUT", path, data=b"x", headers={"If-None-Match": matching})
        assert status == 412, matching
        status, _, _ = await a.json("DELETE", path, headers={"If-None-Match": matching})
        assert status == 412, matching
    _, _, got = await a.call("GET", path)
    assert got == NEW
    status, _, _ = await a.json("PUT", path, data=b"x", headers={"If-None-Match": old})
    assert status == 201
    created = path.replace("doc.txt", "new.txt")
    status, _, _ = await a.json("PUT", created, data=b"new", headers={"If-None-Match": "*"})
    assert status == 201
