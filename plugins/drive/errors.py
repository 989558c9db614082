"""Drive errors: each carries the HTTP status and code the API answers with, and a
message that reads well in a chat reply."""

from __future__ import annotations


class DriveError(Exception):
    status = 400
    code = "M_BAD_REQUEST"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Headers the HTTP answer carries besides the JSON body (Content-Range for 416).
        self.headers = headers or {}


class NotFound(DriveError):
    status = 404
    code = "M_NOT_FOUND"


class Denied(DriveError):
    status = 403
    code = "M_FORBIDDEN"


class Conflict(DriveError):
    """A name already taken, a move into itself, a restore onto a live name."""

    status = 409
    code = "DRIVE_CONFLICT"


class PreconditionFailed(DriveError):
    """A conditional request's precondition (If-Match, If-None-Match) is false."""

    status = 412
    code = "DRIVE_PRECONDITION_FAILED"


class StaleRevision(PreconditionFailed):
    """If-Match named a revision that is no longer the current one, or none at all."""

    code = "DRIVE_STALE_REVISION"


class RangeNotSatisfiable(DriveError):
    """A Range outside the file; the answer says how large the file is."""

    status = 416
    code = "DRIVE_RANGE_NOT_SATISFIABLE"


class QuotaExceeded(DriveError):
    status = 507
    code = "DRIVE_QUOTA_EXCEEDED"


class ContentRefused(DriveError):
    """The content policy refuses sharing this (audio or video, by default)."""

    status = 403
    code = "DRIVE_CONTENT_REFUSED"


class LinkGone(DriveError):
    """A shared link whose file went to the trash, or whose sharer lost access."""

    status = 410
    code = "DRIVE_LINK_GONE"
