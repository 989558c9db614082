"""RFC 9110 conditional requests, the pure logic (plugins/drive/preconditions.py); the
drive's routes are tested end to end in test_http_conditional.py."""

from __future__ import annotations

import pytest

from anywhere.plugins.drive.preconditions import (
    EntityTag,
    Outcome,
    TagList,
    evaluate,
    range_applies,
)

CURRENT = EntityTag("12")


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ('"12"', [EntityTag("12")]),
        ('W/"12"', [EntityTag("12", weak=True)]),
        ('"11", W/"12" ,"13"', [EntityTag("11"), EntityTag("12", True), EntityTag("13")]),
        ('"a,b"', [EntityTag("a,b")]),  # a comma inside the quotes is part of the tag
        ('"", "12"', [EntityTag(""), EntityTag("12")]),
        (', "12",', [EntityTag("12")]),  # empty list elements are allowed
    ],
)
def test_entity_tag_lists_parse(raw, tags):
    parsed = TagList.parse(raw)
    assert not parsed.malformed and list(parsed.tags) == tags


@pytest.mark.parametrize("raw", ["12", "bogus", '"12', '"12" "13"', 'w/"12"', "", '"a"b"'])
def test_values_that_are_not_entity_tag_lists_match_nothing(raw):
    parsed = TagList.parse(raw)
    assert parsed.malformed
    assert not parsed.strong_match(CURRENT) and not parsed.weak_match(CURRENT)


@pytest.mark.parametrize(
    ("if_match", "outcome"),
    [
        ('"12"', Outcome.PROCEED),
        ('"11", "12"', Outcome.PROCEED),
        ("*", Outcome.PROCEED),
        ('"11"', Outcome.FAILED),
        ('W/"12"', Outcome.FAILED),  # If-Match compares strongly: a weak tag never matches
        ('"bogus"', Outcome.FAILED),
        ("bogus", Outcome.FAILED),
    ],
)
def test_if_match_is_a_strong_comparison(if_match, outcome):
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        assert evaluate(method, TagList.parse(if_match), None, CURRENT).outcome is outcome


def test_if_match_needs_a_current_representation_even_for_star():
    assert evaluate("PUT", TagList.parse("*"), None, None).outcome is Outcome.FAILED
    assert evaluate("PUT", TagList.parse('"12"'), None, None).outcome is Outcome.FAILED


def test_a_write_carries_the_matched_tag_to_be_checked_again_when_stored():
    assert evaluate("PUT", TagList.parse('"11", "12"'), None, CURRENT).matched == CURRENT
    assert evaluate("PUT", TagList.parse("*"), None, CURRENT).matched is None
    assert evaluate("PUT", None, None, CURRENT).matched is None


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [('"12"', True), ('W/"12"', True), ('"11", "12"', True), ("*", True), ('"11"', False)],
)
def test_if_none_match_is_a_weak_comparison_304_for_reads_412_for_writes(if_none_match, matches):
    tags = TagList.parse(if_none_match)
    read = Outcome.NOT_MODIFIED if matches else Outcome.PROCEED
    write = Outcome.FAILED if matches else Outcome.PROCEED
    assert evaluate("GET", None, tags, CURRENT).outcome is read
    assert evaluate("HEAD", None, tags, CURRENT).outcome is read
    assert evaluate("PUT", None, tags, CURRENT).outcome is write
    assert evaluate("DELETE", None, tags, CURRENT).outcome is write


def test_if_none_match_star_lets_a_create_through():
    assert evaluate("PUT", None, TagList.parse("*"), None).outcome is Outcome.PROCEED


def test_if_match_is_evaluated_before_if_none_match():
    verdict = evaluate("GET", TagList.parse('"11"'), TagList.parse('"12"'), CURRENT)
    assert (verdict.outcome, verdict.field) == (Outcome.FAILED, "If-Match")


@pytest.mark.parametrize(
    ("if_range", "applies"),
    [
        (None, True),
        ('"12"', True),
        ('"11"', False),
        ('W/"12"', False),  # If-Range needs a strong validator
        ("Tue, 01 Dec 2026 10:00:00 GMT", False),  # no Last-Modified: a date never matches
        ("*", False),
        ('"11", "12"', False),
    ],
)
def test_if_range_sends_the_range_only_for_the_current_strong_tag(if_range, applies):
    assert range_applies(if_range, CURRENT) is applies
