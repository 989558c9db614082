"""`anywhere dev` — the README's first command — as a person uses it: it prints where
to log in, a Matrix client logs in with that, talks to the bot, and Ctrl-C stops all."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nio import AsyncClient, LoginResponse

from bridge.testing.stack import MatrixUser

pytestmark = pytest.mark.e2e


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


async def test_dev_prints_a_working_login_and_ctrl_c_stops_everything(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "dev", "--dir", str(tmp_path / "dev")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        umask=0o022,
    )
    output = ""
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in output:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"anywhere dev exited:\n{output}"
            output += line
            assert time.monotonic() < deadline, f"anywhere dev did not come up:\n{output}"
        homeserver = re.search(r"Homeserver:\s+(\S+)", output).group(1)
        user_id, password = re.search(r"Demo login:\s+(\S+) / password (\S+)", output).groups()
        bot = re.search(r"Talk to:\s+(\S+)", output).group(1)

        client = AsyncClient(homeserver, user_id)
        login = await client.login(password)
        assert isinstance(login, LoginResponse), login
        demo = MatrixUser(homeserver, user_id, login.access_token, login.device_id)
        await client.close()
        try:
            await demo.sync_once(0)
            room = await demo.dm(bot)
            await demo.send_text(room, "!help")
            reply = await demo.wait_for_notice(room, bot, "help")
            for plugin in ("basics:", "policy:", "drive:", "calls:", "groups:"):
                assert plugin in reply["content"]["body"]
        finally:
            await demo.close()
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output + rest
    assert "Stopped." in rest
    assert not port_open(homeserver), "Synapse is still running after Ctrl-C"
    assert_private(tmp_path / "dev")


def assert_private(workdir: Path) -> None:
    """Tokens, passwords, both databases and the media: nothing readable by other users,
    though the dev stack was started with the usual umask 022."""
    written = [workdir, *workdir.rglob("*")]
    for name in ("config.yaml", "registration.yaml", "anywhere.db", "homeserver.db"):
        assert any(p.name == name for p in written), f"no {name} in {workdir}"
    assert (workdir / "synapse" / "media").is_dir()
    readable = [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in written if p.stat().st_mode & 0o077]
    assert readable == []
