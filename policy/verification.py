"""Pure helpers for verifying a phone number with a one-time code (``!verify phone``,
``!verify code``). No I/O: the bridge sends the code and stores the state objects.

Only what is needed is kept: while a code is pending, a keyed hash of the number and of
the code; once verified, a :class:`VerifiedRecord` (method, time, number hash), deleted
after the retention period. The ``salt`` is a secret of the deployment (keep it out of
the database): phone numbers are few enough that an unkeyed hash could be reversed by
trying them all.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace


class InvalidPhoneNumber(ValueError):
    """The number cannot be read; the message says how to write it."""


class SendLimited(Exception):
    """No code may be sent now; ``retry_after`` seconds until one may."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class VerificationLimits:
    """Defaults: 6-digit codes valid 10 minutes, 5 tries per code, at most 3 codes an hour
    and one a minute, verified records kept a year."""

    code_length: int = 6
    code_ttl: float = 600.0
    max_attempts: int = 5
    max_sends: int = 3
    send_window: float = 3600.0
    resend_interval: float = 60.0
    retention: float = 365 * 86400.0


DEFAULT_LIMITS = VerificationLimits()

_SEPARATORS = re.compile(r"[\s\-.()/]")


def normalize_phone(number: str, default_country_code: str | None = None) -> str:
    """``number`` in E.164 (``+821012345678``).

    Spaces, dashes, dots and parentheses are ignored; ``00`` is read as ``+``. A number
    without a country code gets ``default_country_code`` (``"82"``) after dropping one
    leading trunk ``0`` (``010-1234-5678`` → ``+821012345678``).
    """
    digits = _SEPARATORS.sub("", number or "")
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        if default_country_code is None:
            raise InvalidPhoneNumber(
                f"{number!r} has no country code; write it like +82 10 1234 5678"
            )
        digits = f"+{default_country_code}{digits.removeprefix('0')}"
    if not digits[1:].isdigit() or not 8 <= len(digits) - 1 <= 15:
        raise InvalidPhoneNumber(
            f"{number!r} is not a phone number; write it with its country code, like "
            "+82 10 1234 5678 (8 to 15 digits)"
        )
    return digits


def new_salt() -> bytes:
    return secrets.token_bytes(32)


def key_id(salt: bytes) -> str:
    """A short public name of a key, stored with what it hashed (not the key itself), so
    that records keep being checked with the key they were made with after it changes."""
    return hmac.new(salt, b"anywhere-key-id", hashlib.sha256).hexdigest()[:8]


def hash_phone(number: str, salt: bytes) -> str:
    """A keyed hash (HMAC-SHA256) of an already normalized number."""
    return hmac.new(salt, b"phone:" + number.encode(), hashlib.sha256).hexdigest()


def generate_code(length: int = 6) -> str:
    """A random code of ``length`` digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def _hash_code(code: str, salt: bytes, phone_hash: str) -> str:
    message = f"code:{phone_hash}:{code.strip()}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def is_expired(expires_at: float, now: float) -> bool:
    return now >= expires_at


class CheckResult(enum.StrEnum):
    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    NOT_A_CODE = "not_a_code"


@dataclass(frozen=True)
class CheckOutcome:
    result: CheckResult
    attempts_left: int

    @property
    def verified(self) -> bool:
        return self.result is CheckResult.VERIFIED

    @property
    def message(self) -> str:
        """What to tell the person."""
        if self.result is CheckResult.VERIFIED:
            return "Your phone number is verified."
        if self.result is CheckResult.WRONG_CODE:
            return (
                f"That code is not right; {self.attempts_left} tries left. "
                "Send `!verify code CODE` with the code you received."
            )
        if self.result is CheckResult.NOT_A_CODE:
            return (
                "That is not a code: codes are the digits in the message you received. "
                f"No try was used; {self.attempts_left} tries left. "
                "Send `!verify code CODE` with the code you received."
            )
        if self.result is CheckResult.EXPIRED:
            return "That code has expired. Send `!verify phone NUMBER` to get a new one."
        return "Too many wrong codes. Send `!verify phone NUMBER` to get a new one."


@dataclass(frozen=True)
class PendingVerification:
    """A code sent and not yet confirmed, plus the recent send times (for the limits).

    Keep the last one per person; pass it as ``previous`` when sending again so that
    the send limits count across numbers.
    """

    phone_hash: str
    code_hash: str
    sent_at: float
    expires_at: float
    attempts: int = 0
    send_times: tuple[float, ...] = ()
    key_id: str = ""
    """The :func:`key_id` of the salt the hashes were made with ("": the deployment's
    legacy key, from before keys had ids)."""

    @classmethod
    def start(
        cls,
        phone: str,
        *,
        salt: bytes,
        now: float,
        limits: VerificationLimits = DEFAULT_LIMITS,
        previous: PendingVerification | None = None,
        code: str | None = None,
        key: str = "",
    ) -> tuple[PendingVerification, str]:
        """A new pending verification for the normalized ``phone`` and the code to send.

        Raises :class:`SendLimited` when the person asked too often.
        """
        recent = tuple(
            t for t in (previous.send_times if previous else ()) if now - t < limits.send_window
        )
        if recent and now - recent[-1] < limits.resend_interval:
            wait = limits.resend_interval - (now - recent[-1])
            raise SendLimited(f"A code was just sent; wait {wait:.0f} s before asking again.", wait)
        if len(recent) >= limits.max_sends:
            wait = limits.send_window - (now - recent[0])
            raise SendLimited(
                f"Too many codes sent; try again in {max(1, round(wait / 60))} min.", wait
            )
        code = code if code is not None else generate_code(limits.code_length)
        phone_hash = hash_phone(phone, salt)
        pending = cls(
            phone_hash=phone_hash,
            code_hash=_hash_code(code, salt, phone_hash),
            sent_at=now,
            expires_at=now + limits.code_ttl,
            send_times=(*recent, now),
            key_id=key,
        )
        return pending, code

    def check(
        self,
        code: str,
        *,
        salt: bytes,
        now: float,
        limits: VerificationLimits = DEFAULT_LIMITS,
    ) -> tuple[PendingVerification, CheckOutcome]:
        """Check a code the person typed; returns the updated state and the outcome.

        Something that cannot be a code (not ``code_length`` digits) uses up no try: it is
        a typo, not a guess."""
        if self.attempts >= limits.max_attempts:
            return self, CheckOutcome(CheckResult.TOO_MANY_ATTEMPTS, 0)
        if is_expired(self.expires_at, now):
            return self, CheckOutcome(CheckResult.EXPIRED, limits.max_attempts - self.attempts)
        typed = _SEPARATORS.sub("", code)
        if not (typed.isascii() and typed.isdigit() and len(typed) == limits.code_length):
            return self, CheckOutcome(CheckResult.NOT_A_CODE, limits.max_attempts - self.attempts)
        code = typed
        state = replace(self, attempts=self.attempts + 1)
        left = limits.max_attempts - state.attempts
        if hmac.compare_digest(_hash_code(code, salt, self.phone_hash), self.code_hash):
            return state, CheckOutcome(CheckResult.VERIFIED, left)
        if left == 0:
            return state, CheckOutcome(CheckResult.TOO_MANY_ATTEMPTS, 0)
        return state, CheckOutcome(CheckResult.WRONG_CODE, left)

    def verified_record(self, now: float) -> VerifiedRecord:
        return VerifiedRecord(method="code", verified_at=now, phone_hash=self.phone_hash)


@dataclass(frozen=True)
class VerifiedRecord:
    """All that is kept after a successful verification."""

    method: str
    verified_at: float
    phone_hash: str | None = None

    def expired(self, now: float, retention: float) -> bool:
        """True once the record is older than ``retention`` seconds: delete it then."""
        return now - self.verified_at >= retention
