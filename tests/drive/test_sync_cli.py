"""The sync client's command-line pieces that need no server."""

from __future__ import annotations

import io

from plugins.drive.sync.cli import ProgressBar
from plugins.drive.sync.credentials import Credentials, LoginError, load, save


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
