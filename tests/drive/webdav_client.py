"""A person's WebDAV client for the drive tests: an app password made through the bot,
Basic auth, and the external tools (litmus, rclone) found or the test skipped (failed
under CI=true)."""

from __future__ import annotations

import re
import shutil

import aiohttp

from anywhere.bridge.testing.fixtures import skip_unless_ci

from .people import Api, DrivePerson


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_unless_ci(f"{name} is not installed (Debian package {name}; scripts/test.sh)")
    return path


class Dav:
    """``person`` over WebDAV with an app password made by ``!drive apppassword``."""

    def __init__(self, stack, person: DrivePerson, password: str) -> None:
        self.stack = stack
        self.person = person
        self.password = password
        self.root = stack.bridge.url + "/dav"
        self.login = person.id.removeprefix("@").partition(":")[0]  # the localpart
        self.headers = {"Authorization": aiohttp.encode_basic_auth(self.login, password)}

    @classmethod
    async def of(cls, stack, person: DrivePerson, name: str = "laptop") -> Dav:
        answer = await person.ask(None, f"!drive apppassword create {name}", "password: ")
        password = re.search(r"password: (\S+)", answer).group(1)
        return cls(stack, person, password)

    async def folder(self, name: str) -> str:
        """A new folder (through the HTTP API), its URL under /dav/."""
        await Api(self.stack, self.person).folder(name)
        return f"{self.root}/{name}/"

    async def call(self, method: str, url: str, **kwargs) -> tuple[int, dict, bytes]:
        if not url.startswith("http"):
            url = self.root + url
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method, url, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
            ) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()
