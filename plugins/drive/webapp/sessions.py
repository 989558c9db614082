"""Drive sessions: short-lived bearer tokens the bridge issues to the web app when it
runs as a widget (Element hands the page an OpenID token, not an access token).

A session token is ``drive-session.`` followed by a value signed with the bridge's signer
(purpose ``drive.session``): the user and when the session ends. Nothing is stored, so a
second bridge host with the same signing key accepts it too; it cannot be revoked before
it ends, which is why it is short."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from aiohttp import web

from anywhere.bridge.api import BadSignature, Signer

PREFIX = "drive-session."
PURPOSE = "drive.session"
#: How long a drive session lasts; the widget asks for a new OpenID token after that.
SESSION_SECONDS = 15 * 60


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=json.dumps({"errcode": "M_UNKNOWN_TOKEN", "error": message}),
        content_type="application/json",
    )


class DriveSessions:
    """Issues and checks drive session tokens."""

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._clock = clock

    @staticmethod
    def is_session(token: str) -> bool:
        return token.startswith(PREFIX)

    def issue(self, user_id: str, seconds: int = SESSION_SECONDS) -> tuple[str, int]:
        """A token for ``user_id`` and the time (Unix seconds) it ends."""
        expires = int(self._clock()) + seconds
        return PREFIX + self._signer.sign({"u": user_id, "exp": expires}, PURPOSE), expires

    def user_for(self, token: str) -> str:
        """The session's user; raises a JSON 401 for a changed, foreign or ended token."""
        try:
            value = self._signer.unsign(token[len(PREFIX) :], PURPOSE)
        except BadSignature:
            raise _unauthorized("this drive session is not valid: open the drive again") from None
        if not isinstance(value, dict) or not isinstance(value.get("u"), str):
            raise _unauthorized("this drive session is not valid: open the drive again")
        if not isinstance(value.get("exp"), int) or value["exp"] <= self._clock():
            raise _unauthorized("this drive session has ended: open the drive again")
        return value["u"]
