"""Signing in to ``/dav/``: HTTP Basic with a Matrix user name and an app password
(:mod:`.passwords`), then the same permission gate as the drive's HTTP API."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from aiohttp import web

from .answers import DavError
from .passwords import AppPasswords

REALM = "Anywhere drive"


class AppPasswordLogin:
    def __init__(
        self,
        passwords: AppPasswords,
        homeserver_domain: str,
        permit: Callable[[str], Awaitable[None]],
    ) -> None:
        self.passwords = passwords
        self.homeserver_domain = homeserver_domain
        self.permit = permit  # raises Denied for a person who may not use the drive

    async def authenticate(self, request: web.Request) -> str:
        """The person an app password belongs to, allowed to use the drive."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise DavError(
                401,
                "sign in with your Matrix ID and an app password (create one by sending "
                "!drive apppassword create NAME to the bot)",
            )
        try:
            login, _, secret = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise DavError(401, "the Authorization header is not valid Basic credentials") from exc
        if login.startswith("@") and ":" not in login and ":" in secret:
            # "@alice:example.org:password": Basic splits at the first colon
            server, _, secret = secret.partition(":")
            login = f"{login}:{server}"
        user = self.user_id(login)
        if not user or not await self.passwords.verify(user, secret):
            raise DavError(
                401,
                "wrong user name or app password: the user name is your Matrix ID, the "
                "password one made with !drive apppassword create NAME",
            )
        await self.permit(user)
        return user

    def user_id(self, login: str) -> str | None:
        """The Matrix ID a Basic user name means: ``alice`` (on this homeserver),
        ``alice@example.org`` or ``@alice:example.org``."""
        login = login.strip()
        if login.startswith("@") and ":" in login:
            return login
        local, at, server = login.partition("@")
        if local and ":" not in login:
            return f"@{local}:{server if at else self.homeserver_domain}"
        return None
