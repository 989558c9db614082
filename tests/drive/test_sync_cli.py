"""The sync client's command-line pieces that need no server."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

import pytest

from anywhere.plugins.drive.sync import credentials
from anywhere.plugins.drive.sync.cli import ProgressBar, plain_http_warning
from anywhere.plugins.drive.sync.credentials import Credentials, LoginError, load, save


def test_the_progress_bar_draws_whole_percent_steps_and_ends_the_line():
    out = io.StringIO()
    bar = ProgressBar("big.iso", 4 << 20, stream=out)
    for _ in range(4):
        bar(1 << 20)
    text = out.getvalue()
    assert "[#######.......................]  25% big.iso" in text
    assert text.endswith("[##############################] 100% big.iso\n")


def test_the_stored_login_is_private_and_a_missing_one_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    try:
        load()
    except LoginError as exc:
        assert "run `anywhere drive login`" in str(exc)
    else:
        raise AssertionError("no login is stored yet")
    path = save(Credentials("http://hs", "http://bridge", "@kim:hs", "tok", "DEV"))
    assert path == tmp_path / "anywhere" / "drive.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load().access_token == "tok"


def test_the_login_is_private_from_the_moment_it_is_written(tmp_path, monkeypatch):
    """No window: the token is written into a file that is already 0600 (a umask of 0
    and a left-over file of the old temporary name, 0644, change nothing)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "anywhere").mkdir()
    (tmp_path / "anywhere" / "drive.tmp").write_text("left over")
    os.chmod(tmp_path / "anywhere" / "drive.tmp", 0o644)
    (tmp_path / "anywhere" / "drive.json").write_text("{}")  # an old one, world-readable
    os.chmod(tmp_path / "anywhere" / "drive.json", 0o644)
    modes_when_written = []
    real_dump = credentials.json.dump

    def watching_dump(data, handle, **kwargs):
        modes_when_written.append(stat.S_IMODE(os.fstat(handle.fileno()).st_mode))
        return real_dump(data, handle, **kwargs)

    monkeypatch.setattr(credentials.json, "dump", watching_dump)
    old_umask = os.umask(0)
    try:
        path = save(Credentials("http://hs", "http://bridge", "@kim:hs", "secret", "DEV"))
    finally:
        os.umask(old_umask)
    assert modes_when_written == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "anywhere" / "drive.tmp").read_text() == "left over"  # not reused
    assert sorted(p.name for p in (tmp_path / "anywhere").iterdir()) == ["drive.json", "drive.tmp"]


def _login(tmp_path, *extra: str, **popen) -> subprocess.CompletedProcess:
    """`drive login` with no terminal: a new session has no controlling terminal, so
    the password cannot be asked on /dev/tty either."""
    env = {k: v for k, v in os.environ.items() if k != "ANYWHERE_DRIVE_PASSWORD"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "anywhere.plugins.drive.sync", "login", "--homeserver",
         "http://127.0.0.1:9", "--user", "@kim:hs", "--bridge", "http://127.0.0.1:9", *extra],
        env=env, capture_output=True, text=True, timeout=60, start_new_session=True, **popen,
    )  # fmt: skip


@pytest.mark.parametrize("stdin", ["empty", "closed"])
def test_login_without_a_terminal_or_password_file_says_what_to_pass(tmp_path, stdin):
    popen = {"stdin": subprocess.DEVNULL}
    if stdin == "closed":
        popen = {"stdin": subprocess.DEVNULL, "preexec_fn": lambda: os.close(0)}
    run = _login(tmp_path, **popen)
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr and "EOFError" not in run.stderr, run.stderr
    assert "there is no terminal to ask for it on" in run.stderr
    assert "--password-file FILE" in run.stderr and "ANYWHERE_DRIVE_PASSWORD" in run.stderr
    assert not (tmp_path / "anywhere").exists()  # nothing stored


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://drive.example.org", True),
        ("http://10.0.0.5:8080", True),
        ("https://drive.example.org", False),
        ("http://localhost:29331", False),
        ("http://127.0.0.1:29331", False),
        ("http://[::1]:29331", False),
    ],
)
def test_login_warns_about_plain_http_to_another_computer(url, warned):
    warning = plain_http_warning(url, "--bridge")
    assert (warning is not None) == warned
    if warned:
        assert f"--bridge {url} is plain http:// to another computer" in warning
        assert "use https://" in warning


def test_the_login_command_prints_the_plain_http_warning(tmp_path):
    run = _login(tmp_path, "--bridge", "http://drive.example.org", stdin=subprocess.DEVNULL)
    assert "warning: --bridge http://drive.example.org is plain http://" in run.stderr
    assert "warning: --homeserver" not in run.stderr  # 127.0.0.1 is this computer


def test_a_password_piped_in_without_a_terminal_is_used(tmp_path):
    """It reaches the login (here: a homeserver that is not there, which is said, after
    a few tries rather than forever)."""
    run = _login(tmp_path, input="correct horse\n")
    assert run.returncode == 1, run
    assert "no password" not in run.stderr
    assert "cannot reach the homeserver at http://127.0.0.1:9" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
