"""`anywhere dev` — the README's first command — as a person uses it: it prints where
to log in, a Matrix client logs in with that, talks to the bot, and Ctrl-C stops all; a
second start after a crash resumes; the demo people, the admin and the demo rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nio import AsyncClient, LoginResponse

from anywhere.bridge.devstack import stop_leftover_synapse
from anywhere.bridge.testing.stack import MatrixUser

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


class Dev:
    """``anywhere dev`` as a child process, its output read as it comes."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anywhere", "dev", "--dir", str(workdir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            umask=0o022,
        )
        self.output = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.output += line
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 120.0, start: int = 0) -> re.Match:
        """The first match of ``pattern`` in the output after ``start``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = re.compile(pattern).search(self.output, start)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {pattern!r} in:\n{self.output}"
                assert self._reader.is_alive(), f"anywhere dev exited:\n{self.output}"
                self._changed.wait(remaining)

    def running(self) -> dict[str, str]:
        """What the "Anywhere is running" block says."""
        self.wait_for("Press Ctrl-C to stop.")
        logins = dict(re.findall(r"(@\S+:localhost) / password (\S+)", self.output))
        return {
            "homeserver": re.search(r"Homeserver:\s+(\S+)", self.output).group(1),
            "bot": re.search(r"Talk to:\s+(\S+)", self.output).group(1),
            **logins,
        }

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)


async def log_in(homeserver: str, user_id: str, password: str) -> MatrixUser:
    client = AsyncClient(homeserver, user_id)
    login = await client.login(password)
    assert isinstance(login, LoginResponse), login
    await client.close()
    person = MatrixUser(homeserver, user_id, login.access_token, login.device_id)
    await person.sync_once(0)
    return person


async def ask(person: MatrixUser, room: str, bot: str, text: str) -> str:
    """Send a command and return the bot's answer to it."""
    start = person.mark(room)
    await person.send_text(room, text)
    answer = await person.wait_for(
        room,
        lambda e: e.get("sender") == bot and e.get("type") == "m.room.message",
        start=start,
    )
    return answer["content"]["body"]


async def test_dev_prints_a_working_login_and_ctrl_c_stops_everything(tmp_path):
    dev = Dev(tmp_path / "dev")
    try:
        shown = dev.running()
        homeserver, bot = shown["homeserver"], shown["bot"]
        demo = await log_in(homeserver, "@demo:localhost", shown["@demo:localhost"])
        try:
            room = await demo.dm(bot)
            await demo.send_text(room, "!help")
            reply = await demo.wait_for_notice(room, bot, "help")
            for plugin in ("basics:", "policy:", "drive:", "calls:", "groups:"):
                assert plugin in reply["content"]["body"]
        finally:
            await demo.close()
    finally:
        code = dev.interrupt()
    assert code == 0, dev.output
    assert "Stopped." in dev.output
    assert "Creating the dev stack in" in dev.output  # the first start says what it does
    assert "verification.salt is empty" not in dev.output  # a secret of its own
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


async def test_a_second_start_after_the_dev_stack_was_killed_resumes(tmp_path):
    """SIGKILL takes the bridge down with `anywhere dev` and leaves its Synapse running;
    the next start restarts that Synapse, starts the bridge and the bot answers."""
    first = Dev(tmp_path / "dev")
    try:
        shown = first.running()
    finally:
        first.kill()
    homeserver, bot = shown["homeserver"], shown["bot"]
    assert port_open(homeserver), "the killed dev stack's Synapse should still be running"

    second = Dev(tmp_path / "dev")
    try:
        again = second.running()
        assert again["homeserver"] == homeserver
        assert again["@demo:localhost"] == shown["@demo:localhost"]
        assert "A Synapse left running by the previous run" in second.output
        assert "Creating the dev stack" not in second.output
        demo = await log_in(homeserver, "@demo:localhost", shown["@demo:localhost"])
        try:
            room = await demo.dm(bot)
            assert "pong" in (await ask(demo, room, bot, "!ping")).lower()
        finally:
            await demo.close()
    finally:
        code = second.interrupt()
        stop_leftover_synapse(tmp_path / "dev" / "synapse")  # should there be one
    assert code == 0, second.output
    assert "Traceback" not in second.output, second.output
    assert not port_open(homeserver), "Synapse is still running after Ctrl-C"


async def test_a_second_dev_stack_on_the_same_folder_is_refused_clearly(tmp_path):
    first = Dev(tmp_path / "dev")
    try:
        first.running()
        second = subprocess.run(
            [sys.executable, "-m", "anywhere", "dev", "--dir", str(tmp_path / "dev")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another `anywhere dev` is running with" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        assert first.interrupt() == 0, first.output


async def test_the_demo_people_the_admin_and_the_demonstration_rules(tmp_path):
    dev = Dev(tmp_path / "dev", "--person", "carol")
    try:
        shown = dev.running()
        homeserver, bot = shown["homeserver"], shown["bot"]
        assert {"@demo:localhost", "@demo2:localhost", "@carol:localhost"} <= set(shown)
        assert "@demo:localhost / password" in dev.output and "an admin of the bot" in dev.output

        demo = await log_in(homeserver, "@demo:localhost", shown["@demo:localhost"])
        demo2 = await log_in(homeserver, "@demo2:localhost", shown["@demo2:localhost"])
        carol = await log_in(homeserver, "@carol:localhost", shown["@carol:localhost"])
        try:
            room = await demo.dm(bot)
            assert "Background jobs:" in await ask(demo, room, bot, "!jobs")
            room2 = await demo2.dm(bot)
            assert "Background jobs:" not in await ask(demo2, room2, bot, "!jobs")

            explain = "!policy explain call.place"
            answer = await ask(demo, room, bot, explain)
            assert "Decision: DENY by demo-carrier-plan [network_unknown]" in answer
            assert "!network wifi" in answer
            await ask(demo, room, bot, "!network 3g")
            answer = await ask(demo, room, bot, explain)
            assert "Decision: DENY by demo-carrier-plan [plan_below_mvoip_threshold]" in answer
            assert "45,000 KRW" in answer and "!network wifi" in answer
            await ask(demo, room, bot, "!network wifi")
            answer = await ask(demo, room, bot, explain)
            assert "Decision: REQUIRE_VERIFICATION by demo-verify-before-calling" in answer

            mark = len(dev.output)
            await ask(demo, room, bot, "!verify phone +82 10 1234 5678")
            code = dev.wait_for(r"verification code.*?code=(\d{6})", start=mark).group(1)
            await ask(demo, room, bot, f"!verify code {code}")
            answer = await ask(demo, room, bot, explain)
            assert "Decision: ALLOW by demo-verify-before-calling [verified]" in answer
        finally:
            for person in (demo, demo2, carol):
                await person.close()
    finally:
        assert dev.interrupt() == 0, dev.output


def test_the_demonstration_rules_pass_their_cases():
    examples = ROOT / "policy" / "examples"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "anywhere",
            "policy",
            "test",
            str(examples / "demo.rules.yaml"),
            str(examples / "demo.cases.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mismatched" in result.stdout


FAKE_PYTHON = """#!/bin/sh
# Stands in for the venv's Python: records each pip run; `pip install -e` "installs"
# the anywhere command.
echo "$@" >> "$(dirname "$0")/../pip-runs"
if [ -f "$(dirname "$0")/../pip-fails" ]; then exit 1; fi
case "$*" in
  *"install --quiet -e"*)
    printf '#!/bin/sh\\necho "Anywhere is running ($*)"\\n' > "$(dirname "$0")/anywhere"
    chmod +x "$(dirname "$0")/anywhere";;
esac
"""


def test_dev_sh_installs_only_when_pyproject_changed_and_says_what_it_does(tmp_path):
    """scripts/dev.sh in a copy of the project whose venv's Python records pip runs."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "dev.sh", tmp_path / "scripts" / "dev.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / "setup.py").write_text("from setuptools import setup\n\nsetup()\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    runs = tmp_path / ".venv" / "pip-runs"

    def dev_sh() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(tmp_path / "scripts" / "dev.sh"), "--person", "carol"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHON": sys.executable},
        )

    def pip_runs() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    first = dev_sh()
    assert first.returncode == 0, first.stderr
    assert "Installing Anywhere and a Synapse into .venv" in first.stdout
    assert "Anywhere is running (dev --person carol)" in first.stdout
    assert pip_runs() == 2  # pip itself, then Anywhere

    second = dev_sh()
    assert second.returncode == 0, second.stderr
    assert "pyproject.toml is unchanged: no install" in second.stdout
    assert "Anywhere is running" in second.stdout
    assert pip_runs() == 2

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    (tmp_path / ".venv" / "pip-fails").touch()
    failed = dev_sh()
    assert failed.returncode != 0 and "Anywhere is running" not in failed.stdout
    (tmp_path / ".venv" / "pip-fails").unlink()
    third = dev_sh()  # the failed install is not taken for a done one
    assert "Installing Anywhere" in third.stdout and "Anywhere is running" in third.stdout
    assert pip_runs() == 5


async def test_a_folder_from_an_older_dev_stack_gets_the_admin_and_the_demo_rules(tmp_path):
    """What `anywhere dev` wrote before the demo people and rules: the state with one
    password, a config without an admin or rules. The next start keeps the demo login
    and adds the rest, once."""
    from anywhere.bridge.devstack import DEV_PLUGINS
    from anywhere.bridge.testing.stack import write_bridge_files
    from anywhere.bridge.testing.synapse import free_port

    workdir = tmp_path / "dev"
    workdir.mkdir()
    state = {"synapse_port": free_port(), "bridge_port": free_port(), "demo_password": "old-pw"}
    (workdir / "dev-state.json").write_text(json.dumps(state))
    write_bridge_files(
        workdir / "bridge",
        synapse_url=f"http://127.0.0.1:{state['synapse_port']}",
        server_name="localhost",
        enabled=DEV_PLUGINS,
        port=state["bridge_port"],
    )
    dev = Dev(workdir)
    try:
        shown = dev.running()
        assert shown["@demo:localhost"] == "old-pw"
        assert "@demo2:localhost" in shown
        assert "is an admin of the bot; the demonstration rules in" in dev.output
        assert "phone numbers are hashed with a secret of their own" in dev.output
        assert "verification.salt is empty" not in dev.output
        demo = await log_in(shown["homeserver"], "@demo:localhost", "old-pw")
        try:
            room = await demo.dm(shown["bot"])
            assert "Background jobs:" in await ask(demo, room, shown["bot"], "!jobs")
            answer = await ask(demo, room, shown["bot"], "!policy explain call.place")
            assert "demo-verify-before-calling" in answer
        finally:
            await demo.close()
    finally:
        assert dev.interrupt() == 0, dev.output
    assert json.loads((workdir / "dev-state.json").read_text())["config_version"] == 3
