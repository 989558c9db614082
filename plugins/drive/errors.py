"""Drive errors: each carries the HTTP status and code the API answers with, and a
message that reads well in a chat reply."""

from __future__ import annotations


class DriveError(Exception):
    status = 400
    code = "M_BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class StaleRevision(DriveError):
    """If-Match named a revision that is no longer the current one."""

    status = 412
    code = "DRIVE_STALE_REVISION"


class QuotaExceeded(DriveError):
    status = 507
    code = "DRIVE_QUOTA_EXCEEDED"


class ContentRefused(DriveError):
    """The content policy refuses sharing this (audio or video, by default)."""

    status = 403
    code = "DRIVE_CONTENT_REFUSED"
