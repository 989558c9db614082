"""The signalling state machine, fed raw event content as clients send it."""

from __future__ import annotations

import pytest

from anywhere.plugins.calls.signalling import SignallingError, call_content, parse_call_event
from anywhere.plugins.calls.state import (
    Accepted,
    AddCandidates,
    Answer,
    Busy,
    CallBook,
    End,
    Ignore,
    MetadataChanged,
    Refusal,
    Refuse,
    Renegotiate,
    Route,
)

BOT = "@anywhere:localhost"
ALICE = "@alice:localhost"
ROOM = "!room:localhost"
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
ECHO = Route(BOT, "echo")


def raw(kind: str, sender: str = ALICE, age: int | None = 10, **content) -> dict:
    event = {
        "type": f"m.call.{kind}",
        "room_id": ROOM,
        "sender": sender,
        "event_id": f"${kind}{len(content)}",
        "content": {"call_id": "c1", "party_id": "ALICEDEV", "version": "1"} | content,
    }
    if age is not None:
        event["unsigned"] = {"age": age}
    return event


def invite(**content) -> dict:
    return raw("invite", **({"offer": {"type": "offer", "sdp": SDP}, "lifetime": 60000} | content))


def cand(text: str = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host") -> dict:
    return {"candidate": text, "sdpMid": "0", "sdpMLineIndex": 0}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def book() -> CallBook:
    return CallBook(is_ours=lambda u: u == BOT, max_calls=2, clock=Clock())


def feed(book: CallBook, event: dict, route: Route | None = ECHO):
    return book.handle(parse_call_event(event), route)


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


# ----- parsing -----
def test_a_version_1_invite_is_parsed_with_lifetime_invitee_and_party():
    event = parse_call_event(invite(invitee=BOT))
    assert (event.kind, event.version, event.party_id, event.invitee) == (
        "invite",
        "1",
        "ALICEDEV",
        BOT,
    )
    assert (event.lifetime_ms, event.age_ms, event.sdp) == (60000, 10, SDP)


def test_a_version_0_invite_without_party_or_lifetime_is_accepted():
    v0 = raw("invite", offer={"type": "offer", "sdp": SDP}, version=0)
    del v0["content"]["party_id"]
    parsed = parse_call_event(v0)
    assert parsed.version == "0" and not parsed.is_v1
    assert parsed.party_id is None and parsed.lifetime_ms == 60000


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"call_id": ""}, "call_id"),
        ({"offer": {"type": "answer", "sdp": SDP}}, "offer.type"),
        ({"offer": {"type": "offer", "sdp": "hello"}}, "offer.sdp"),
        ({"lifetime": "soon"}, "lifetime"),
        ({"version": 1.5}, "version"),
    ],
)
def test_a_malformed_invite_is_refused_naming_the_field(content, field):
    with pytest.raises(SignallingError, match=field.replace(".", r"\.")):
        parse_call_event(invite(**content))


def test_unreadable_candidates_are_skipped_one_by_one_and_counted():
    items = [{"candidate": 7}, cand(), "x", {"candidate": "candidate:1 1 udp"}, cand("")]
    items.append({"candidate": cand()["candidate"], "sdpMid": "0", "sdpMLineIndex": True})
    event = parse_call_event(raw("candidates", candidates=items))
    assert [c.candidate for c in event.candidates] == [cand()["candidate"], cand("")["candidate"]]
    assert event.skipped_candidates == 4  # "candidate:1 1 udp" has no mid or index


def test_end_of_candidates_is_an_empty_candidate():
    event = parse_call_event(raw("candidates", candidates=[cand(), {"candidate": ""}]))
    assert event.end_of_candidates and not event.candidates[0].is_end


def test_what_we_send_has_version_1_party_or_version_0_without_party():
    assert call_content("c", "p", "1") == {"call_id": "c", "version": "1", "party_id": "p"}
    assert call_content("c", "p", "0") == {"call_id": "c", "version": 0}


# ----- the state machine -----
def test_an_invite_for_us_is_answered_once(book):
    assert kinds(feed(book, invite(invitee=BOT))) == ["Answer"]
    assert kinds(feed(book, invite(invitee=BOT))) == ["Ignore"]  # delivered twice


def test_candidates_before_the_invite_are_buffered_and_handed_over(book):
    assert kinds(feed(book, raw("candidates", candidates=[cand()]))) == ["Ignore"]
    feed(book, raw("candidates", candidates=[{"candidate": ""}]))
    [answer] = feed(book, invite())
    assert isinstance(answer, Answer)
    assert [c.candidate for c in answer.call.pending_candidates] == [cand()["candidate"]]
    assert answer.call.remote_end_of_candidates


def test_candidates_during_set_up_wait_and_later_ones_are_added(book):
    [answer] = feed(book, invite())
    feed(book, raw("candidates", candidates=[cand()]))
    assert len(answer.call.pending_candidates) == 1
    answer.call.state = "answering"
    [add] = feed(book, raw("candidates", candidates=[cand(), {"candidate": ""}]))
    assert isinstance(add, AddCandidates) and add.candidates[-1].is_end


def test_an_expired_invite_is_ignored_by_lifetime_against_age(book):
    [ignored] = feed(book, invite(lifetime=5000) | {"unsigned": {"age": 6000}})
    assert isinstance(ignored, Ignore) and "expired" in ignored.why
    assert kinds(feed(book, invite(lifetime=5000) | {"unsigned": {"age": 4000}})) == ["Answer"]


def test_an_invite_for_another_invitee_is_not_for_us(book):
    [ignored] = feed(book, invite(invitee="@bob:localhost"), route=None)
    assert isinstance(ignored, Ignore) and "@bob:localhost" in ignored.why


def test_our_own_echoes_are_ignored(book):
    assert kinds(feed(book, invite() | {"sender": BOT})) == ["Ignore"]
    assert not book.calls


def test_beyond_the_limit_invites_are_refused_as_busy(book):
    feed(book, invite(call_id="a"))
    feed(book, invite(call_id="b"))
    [busy] = feed(book, invite(call_id="c"))
    assert isinstance(busy, Busy) and busy.callee == BOT and busy.event.call_id == "c"


def test_select_answer_for_another_party_ends_our_side_silently(book):
    [answer] = feed(book, invite())
    assert kinds(feed(book, raw("select_answer", selected_party_id=answer.call.our_party))) == [
        "Ignore"
    ]
    [end] = feed(book, raw("select_answer", selected_party_id="ELSEWHERE"))
    assert isinstance(end, End) and not end.notify and end.reason == "answered_elsewhere"
    assert kinds(feed(book, raw("candidates", candidates=[cand()]))) == ["Ignore"]


def test_hangup_ends_silently_but_not_from_another_device_of_theirs(book):
    feed(book, invite())
    assert kinds(feed(book, raw("hangup", party_id="OTHERDEV"))) == ["Ignore"]
    [end] = feed(book, raw("hangup", reason="user_hangup"))
    assert isinstance(end, End) and not end.notify
    assert not book.active


def test_events_from_someone_not_in_the_call_are_ignored(book):
    feed(book, invite())
    assert kinds(feed(book, raw("hangup", sender="@mallory:localhost"))) == ["Ignore"]
    assert book.active


def test_a_negotiate_offer_is_renegotiated_and_metadata_followed(book):
    feed(book, invite())
    offer = {"type": "offer", "sdp": SDP}
    [renegotiate] = feed(book, raw("negotiate", description=offer))
    assert isinstance(renegotiate, Renegotiate)
    assert kinds(feed(book, raw("negotiate", description={"type": "answer", "sdp": SDP}))) == [
        "Ignore"
    ]
    meta = {"s1": {"purpose": "m.usermedia", "audio_muted": True}}
    [changed] = feed(book, raw("sdp_stream_metadata_changed", sdp_stream_metadata=meta))
    assert isinstance(changed, MetadataChanged) and changed.call.remote_metadata == meta


def test_glare_the_lower_call_id_wins(book):
    ours = book.place(ROOM, BOT, ALICE, Route(BOT, "memo"), {"seconds": 7})
    # their call_id is higher: ignore theirs, ours stands
    [ignored] = feed(book, invite(call_id="z" + ours.call_id))
    assert isinstance(ignored, Ignore) and "glare" in ignored.why
    # theirs is lower: drop ours silently and answer theirs, in our call's mode
    end, answer = feed(book, invite(call_id="0"))
    assert isinstance(end, End) and end.call is ours and not end.notify
    assert isinstance(answer, Answer) and answer.call.mode == "memo"
    assert answer.call.options == {"seconds": 7}


def test_our_outgoing_call_is_answered_then_rejected_calls_end(book):
    call = book.place(ROOM, BOT, ALICE, Route(BOT, "memo"))
    answer = raw("answer", call_id=call.call_id, answer={"type": "answer", "sdp": SDP})
    [accepted] = feed(book, answer)
    assert isinstance(accepted, Accepted) and call.their_party == "ALICEDEV"
    other = book.place(ROOM, BOT, ALICE, Route(BOT, "memo"))
    [end] = feed(book, raw("reject", call_id=other.call_id))
    assert isinstance(end, End) and end.reason == "rejected"


def test_an_unanswered_invite_of_ours_times_out(book):
    call = book.place(ROOM, BOT, ALICE, Route(BOT, "memo"))
    book.clock.now += 61
    [end] = book.expire()
    assert end.call is call and end.reason == "invite_timeout" and end.notify


def test_the_other_side_leaving_ends_the_call_with_a_hangup(book):
    feed(book, invite())
    [end] = book.member_left(ROOM, ALICE)
    assert isinstance(end, End) and end.notify
    assert book.member_left(ROOM, ALICE) == []


def test_the_candidate_buffer_is_bounded(book):
    book.buffer_calls = 3
    for i in range(10):
        feed(book, raw("candidates", call_id=f"x{i}", candidates=[cand()]))
    assert len(book._early) == 3
    book.clock.now += 1000
    feed(book, raw("candidates", call_id="late", candidates=[cand()]))
    assert list(book._early) == [(ROOM, "late")]


def test_a_refused_invite_is_refused_once_with_the_reason(book):
    [refuse] = feed(book, invite(), route=Refusal("@conf:localhost", "members only"))
    assert isinstance(refuse, Refuse) and refuse.callee == "@conf:localhost"
    assert refuse.reason == "members only" and refuse.event.call_id == "c1"
    assert kinds(feed(book, invite(), route=Refusal("@conf:localhost", "again"))) == ["Ignore"]
    assert not book.active


def test_an_unreadable_invite_is_refused_only_the_first_time(book):
    assert book.refused(ROOM, "bad") is True
    assert book.refused(ROOM, "bad") is False
    feed(book, invite())
    assert book.refused(ROOM, "c1") is False  # a call we know is not refused


def test_one_caller_gets_busy_beyond_their_own_limit_others_do_not():
    book = CallBook(is_ours=lambda u: u == BOT, max_calls=10, max_per_person=2, clock=Clock())
    feed(book, invite(call_id="a"))
    feed(book, invite(call_id="b"))
    [busy] = feed(book, invite(call_id="c"))
    assert isinstance(busy, Busy)
    assert kinds(feed(book, invite(call_id="d") | {"sender": "@bob:localhost"})) == ["Answer"]


def test_leaving_a_conference_room_ends_the_call_placed_from_a_direct_chat(book):
    conference = Route("@conf:localhost", "conference", "!group:localhost")
    [answer] = feed(book, invite(), route=conference)  # placed in ROOM, a direct chat
    assert book.member_left("!other:localhost", ALICE) == []
    [end] = book.member_left("!group:localhost", ALICE)
    assert end.call is answer.call and end.notify
