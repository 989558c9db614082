"""The WebDAV If header parser (RFC 4918 10.4): untagged and tagged lists, Not, entity
tags, and malformed headers refused with what is wrong."""

from __future__ import annotations

import pytest

from anywhere.plugins.drive.webdav.conditions import (
    BadIfHeader,
    Condition,
    parse_if,
    submitted_tokens,
)


def test_no_header_is_no_condition():
    assert parse_if(None) == []


def test_untagged_lists_with_tokens_etags_and_not():
    lists = parse_if('(<urn:uuid:1> ["7"]) (Not <DAV:no-lock> ["8"])')
    assert [lst.resource for lst in lists] == [None, None]
    assert lists[0].conditions == [
        Condition(False, "token", "urn:uuid:1"),
        Condition(False, "etag", '"7"'),
    ]
    assert lists[1].conditions == [
        Condition(True, "token", "DAV:no-lock"),
        Condition(False, "etag", '"8"'),
    ]
    assert submitted_tokens(lists) == {"urn:uuid:1", "DAV:no-lock"}


def test_tagged_lists_name_their_resource():
    lists = parse_if("<http://h/dav/A/a.txt> (<urn:uuid:1>) <http://h/dav/A/> (<urn:uuid:2>)")
    assert [(lst.resource, lst.conditions[0].value) for lst in lists] == [
        ("http://h/dav/A/a.txt", "urn:uuid:1"),
        ("http://h/dav/A/", "urn:uuid:2"),
    ]


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("(<urn:uuid:1>", "not closed"),
        ("()", "at least one condition"),
        ("(urn:uuid:1)", "lock-token"),
        ("(<urn:uuid:1", "not closed"),
        ('(["7")', "not closed"),
        ("<http://h/dav/a>", "no condition list"),
        ("urn:uuid:1", "unexpected"),
    ],
)
def test_a_malformed_header_is_refused_saying_why(header, why):
    with pytest.raises(BadIfHeader, match=why):
        parse_if(header)
