"""The one-time code flow's pure helpers: numbers, hashes, codes, expiry and limits."""

from __future__ import annotations

import pytest

from anywhere.policy.verification import (
    CheckResult,
    InvalidPhoneNumber,
    PendingVerification,
    SendLimited,
    VerificationLimits,
    VerifiedRecord,
    generate_code,
    hash_phone,
    new_salt,
    normalize_phone,
)

SALT = b"s" * 32
PHONE = "+821012345678"


@pytest.mark.parametrize(
    ("typed", "country", "normalized"),
    [
        ("+82 10-1234-5678", None, PHONE),
        ("0082 10 1234 5678", None, PHONE),
        ("010-1234-5678", "82", PHONE),
        ("(415) 555-0100", "1", "+14155550100"),
    ],
)
def test_phone_numbers_are_normalized_to_e164(typed, country, normalized):
    assert normalize_phone(typed, country) == normalized


@pytest.mark.parametrize("typed", ["010-1234-5678", "+82 abc", "+123", "", "+1234567890123456"])
def test_unreadable_numbers_say_how_to_write_them(typed):
    with pytest.raises(InvalidPhoneNumber, match=r"\+82 10 1234 5678"):
        normalize_phone(typed)


def test_phone_hash_is_keyed_and_stable():
    assert hash_phone(PHONE, SALT) == hash_phone(PHONE, SALT)
    assert hash_phone(PHONE, SALT) != hash_phone(PHONE, new_salt())
    assert PHONE not in hash_phone(PHONE, SALT)


def test_codes_are_digits_of_the_requested_length():
    codes = {generate_code(6) for _ in range(50)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 1
    assert len(generate_code(8)) == 8


def test_right_code_verifies_and_keeps_only_method_time_and_hash():
    pending, code = PendingVerification.start(PHONE, salt=SALT, now=1000.0)
    assert code not in repr(pending) and PHONE not in repr(pending)
    state, outcome = pending.check(code, salt=SALT, now=1010.0)
    assert outcome.verified and outcome.message == "Your phone number is verified."
    record = state.verified_record(now=1010.0)
    assert record == VerifiedRecord("code", 1010.0, hash_phone(PHONE, SALT))


def test_wrong_codes_count_down_then_lock():
    limits = VerificationLimits(max_attempts=3)
    state, code = PendingVerification.start(PHONE, salt=SALT, now=0.0, code="123456")
    results = []
    for _ in range(4):
        state, outcome = state.check("000000", salt=SALT, now=1.0, limits=limits)
        results.append((outcome.result, outcome.attempts_left))
    assert results == [
        (CheckResult.WRONG_CODE, 2),
        (CheckResult.WRONG_CODE, 1),
        (CheckResult.TOO_MANY_ATTEMPTS, 0),
        (CheckResult.TOO_MANY_ATTEMPTS, 0),
    ]
    _, outcome = state.check("123456", salt=SALT, now=1.0, limits=limits)
    assert outcome.result is CheckResult.TOO_MANY_ATTEMPTS
    assert "`!verify phone NUMBER`" in outcome.message


@pytest.mark.parametrize("typed", ["abc", "12345", "1234567", "12a456", "١٢٣٤٥٦"])
def test_something_that_is_not_a_code_uses_up_no_try(typed):
    limits = VerificationLimits(max_attempts=3)
    state, _ = PendingVerification.start(PHONE, salt=SALT, now=0.0, code="123456")
    after, outcome = state.check(typed, salt=SALT, now=1.0, limits=limits)
    assert after == state
    assert outcome.result is CheckResult.NOT_A_CODE and outcome.attempts_left == 3
    assert "No try was used" in outcome.message
    _, outcome = after.check("123 456", salt=SALT, now=1.0, limits=limits)
    assert outcome.verified  # spaces inside a code are fine


def test_codes_expire():
    state, code = PendingVerification.start(PHONE, salt=SALT, now=0.0)
    _, outcome = state.check(code, salt=SALT, now=600.0)
    assert outcome.result is CheckResult.EXPIRED and "expired" in outcome.message


def test_sends_are_limited_by_interval_and_per_window():
    limits = VerificationLimits(max_sends=2, send_window=3600, resend_interval=60)
    first, _ = PendingVerification.start(PHONE, salt=SALT, now=0.0, limits=limits)
    with pytest.raises(SendLimited) as too_soon:
        PendingVerification.start(PHONE, salt=SALT, now=30.0, limits=limits, previous=first)
    assert too_soon.value.retry_after == 30
    second, _ = PendingVerification.start(
        PHONE, salt=SALT, now=100.0, limits=limits, previous=first
    )
    with pytest.raises(SendLimited, match="Too many codes") as too_many:
        PendingVerification.start(PHONE, salt=SALT, now=200.0, limits=limits, previous=second)
    assert too_many.value.retry_after == 3400
    third, _ = PendingVerification.start(
        PHONE, salt=SALT, now=3601.0, limits=limits, previous=second
    )
    assert third.send_times == (100.0, 3601.0)


def test_verified_records_expire_after_retention():
    record = VerifiedRecord("email", verified_at=0.0)
    assert not record.expired(now=99.0, retention=100.0)
    assert record.expired(now=100.0, retention=100.0)
