"""The `anywhere` command line, as an operator uses it."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anywhere.bridge.testing.synapse import free_port

ROOT = Path(__file__).resolve().parent.parent


def anywhere(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anywhere", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=0o022,  # a usual login's umask: the files must be private anyway
    )


def private(path: Path) -> bool:
    """Neither the group nor others may read, write or enter ``path``."""
    return path.stat().st_mode & 0o077 == 0


def test_init_writes_config_and_registration_with_fresh_tokens_and_refuses_to_overwrite(
    tmp_path,
):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        result = anywhere("init", "--domain", "corp.example", cwd=folder)
        assert result.returncode == 0, result.stderr
    configs = [yaml.safe_load((f / "config.yaml").read_text()) for f in (first, second)]
    registration = yaml.safe_load((first / "registration.yaml").read_text())
    assert configs[0]["appservice"]["as_token"] != configs[1]["appservice"]["as_token"]
    assert registration["as_token"] == configs[0]["appservice"]["as_token"]
    assert registration["hs_token"] == configs[0]["appservice"]["hs_token"]
    assert configs[0]["homeserver"]["domain"] == "corp.example"
    assert configs[0]["bridge"]["permissions"] == {"corp.example": "user"}
    assert private(first / "config.yaml") and private(first / "registration.yaml")  # tokens
    again = anywhere("init", cwd=first)
    assert again.returncode == 1
    assert "exists already; refusing to overwrite" in again.stderr


def test_init_with_a_bad_domain_or_homeserver_writes_nothing_and_says_which_option(tmp_path):
    for args, expected in (
        (["--domain", "not a domain"], "error: --domain: expected a server name"),
        (["--homeserver", "ftp://hs"], "error: --homeserver: expected an http:// or https://"),
        (["--domain", "x\nfoo: 1"], "error: --domain: expected a server name"),
    ):
        result = anywhere("init", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Nothing was written" in result.stderr
        assert list(tmp_path.iterdir()) == []
    fixed = anywhere("init", "--domain", "corp.example", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "registration.yaml"]


def test_init_sets_the_xmpp_component_port_and_refuses_a_bad_one_writing_nothing(tmp_path):
    for bad in ("70000", "0", "xmpp"):
        result = anywhere("init", "--xmpp-component-port", bad, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"--xmpp-component-port: '{bad}' is not a TCP port" in result.stderr
        assert list(tmp_path.iterdir()) == []
    result = anywhere("init", "--xmpp-component-port", "5348", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "config.yaml").read_text()
    config = yaml.safe_load(text)
    assert "groups" in config["plugins"]["enabled"]
    assert config["plugins"]["settings"]["groups"]["xmpp"]["port"] == 5348
    # what docs/networks.md then asks for makes a config the bridge accepts, port kept
    text = text.replace('component_jid: ""', "component_jid: matrix.example.org", 1)
    text = text.replace('secret: ""', 'secret: "a long random secret"', 1)
    text = text.replace("enabled: false", "enabled: true", 1)
    (tmp_path / "config.yaml").write_text(text)
    from anywhere.bridge.config import load_config
    from anywhere.bridge.runtime import load_plugins

    loaded = load_config(tmp_path / "config.yaml")
    load_plugins(loaded)
    xmpp = loaded.plugin_settings("groups")["xmpp"]
    assert (xmpp["enabled"], xmpp["port"]) == (True, 5348)
    assert xmpp["component_jid"] == "matrix.example.org"
    help_text = " ".join(anywhere("init", "--help").stdout.split())
    assert "--xmpp-component-port PORT" in help_text and "port 5347" in help_text


def test_init_and_doctor_find_the_registration_beside_the_config_by_default(tmp_path):
    assert anywhere("init", "-c", "site/config.yaml", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == [
        "config.yaml",
        "registration.yaml",
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = anywhere("doctor", "-c", str(tmp_path / "site" / "config.yaml"), cwd=elsewhere)
    beside = tmp_path / "site" / "registration.yaml"
    assert f"[ok  ] registration: {beside} matches the config" in result.stdout, result.stdout
    (tmp_path / "other.yaml").write_text(beside.read_text())
    result = anywhere("doctor", "-c", "site/config.yaml", "-r", "other.yaml", cwd=tmp_path)
    assert "[ok  ] registration: other.yaml matches the config" in result.stdout, result.stdout


def test_doctor_warns_about_secrets_and_data_that_others_can_read(tmp_path):
    assert anywhere("init", cwd=tmp_path).returncode == 0
    result = anywhere("doctor", cwd=tmp_path)
    assert "[ok  ] permissions: the config, the registration and the data are private" in (
        result.stdout
    ), result.stdout
    # as an older version left them
    (tmp_path / "config.yaml").chmod(0o644)
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data").chmod(0o755)
    result = anywhere("doctor", cwd=tmp_path)
    config, data = tmp_path / "config.yaml", tmp_path / "data"
    assert (
        f"[warn] permissions: {config} is readable by other users (mode 644) — chmod 600 {config}"
        in result.stdout
    ), result.stdout
    assert f"chmod 700 {data}" in result.stdout
    assert "registration.yaml is readable" not in result.stdout


def test_version_and_help_without_a_command():
    version = anywhere("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"anywhere \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout
    bare = anywhere()
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: anywhere")
    for command in ("init", "registration", "run", "doctor", "dev"):
        assert f"    {command}" in bare.stdout


def test_every_option_of_every_core_command_has_help_that_shows_its_default():
    from anywhere.bridge.cli import CORE_COMMANDS, build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in sorted(CORE_COMMANDS):
        command = subparsers.choices[name]
        text = command.format_help()
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"anywhere {name} {action.option_strings[0]} has no help"
            if action.default == []:  # a repeatable option: nothing by default
                continue
            if action.default is not None:
                shown = str(action.default)
            else:  # what happens without the option, in words
                shown = {"registration": "beside the config"}.get(action.dest, "(default: ")
            help_text = command._get_formatter()._get_help_string(action) % vars(action)
            assert "default" in help_text and shown in help_text, (name, action.dest, help_text)
        assert "(default:" in " ".join(text.split()), text
    doctor = " ".join(subparsers.choices["doctor"].format_help().split())
    assert "(default: config.yaml)" in doctor
    assert "(default: registration.yaml beside the config file)" in doctor


def test_registration_rewrites_its_file_private_even_over_a_readable_one(tmp_path):
    assert anywhere("init", cwd=tmp_path).returncode == 0
    (tmp_path / "registration.yaml").chmod(0o644)
    result = anywhere("registration", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert private(tmp_path / "registration.yaml")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_private_file_is_never_readable_by_others_while_it_is_written(tmp_path, monkeypatch):
    """No window between creating the file and restricting it: its mode is checked at the
    moment its content is written."""
    import builtins
    import io

    from anywhere.bridge.config import write_private_file

    seen: list[int] = []
    real_open = builtins.open
    real_fdopen = os.fdopen

    class Watched:
        def __init__(self, file):
            self.file = file

        def write(self, text):
            seen.append(os.fstat(self.file.fileno()).st_mode & 0o777)
            return self.file.write(text)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            self.file.__enter__()
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Watched(real_open(*a, **k)))
    monkeypatch.setattr(io, "open", lambda *a, **k: Watched(real_open(*a, **k)))
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Watched(real_fdopen(*a, **k)))
    old = os.umask(0o022)
    try:
        write_private_file(tmp_path / "secret.yaml", "token: x\n")
        assert seen and all(mode == 0o600 for mode in seen), [oct(m) for m in seen]
        with pytest.raises(FileExistsError):
            write_private_file(tmp_path / "secret.yaml", "token: y\n", exclusive=True)
    finally:
        os.umask(old)
    assert (tmp_path / "secret.yaml").read_text() == "token: x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.yaml"]


def test_run_with_a_bad_config_names_the_key_and_exits(tmp_path):
    assert anywhere("init", cwd=tmp_path).returncode == 0
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["appservice"]["port"] = "many"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = anywhere("run", "-c", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: appservice.port: expected a number, found 'many'" in result.stderr


def test_run_keeps_retrying_a_homeserver_that_is_not_up_yet(tmp_path):
    assert (
        anywhere("init", "--homeserver", f"http://127.0.0.1:{free_port()}", cwd=tmp_path).returncode
        == 0
    )
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["appservice"]["port"] = free_port()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "anywhere", "run", "-c", "config.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    try:
        # Two retries logged, and the bridge still there after them: it waits.
        for line in proc.stdout:  # ends only if the bridge exits
            output += line
            if output.count("homeserver not answering yet, retrying") >= 2:
                break
        assert proc.poll() is None, f"the bridge exited instead of waiting:\n{output}"
    finally:
        proc.terminate()
        output += proc.communicate(timeout=20)[0]
    assert output.count("homeserver not answering yet, retrying") >= 2, output


@pytest.mark.e2e
def test_doctor_passes_every_check_against_a_running_stack(anywhere_stack):
    stack = anywhere_stack
    result = anywhere("doctor", "-c", str(stack.config_path), "-r", str(stack.registration_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in ("config", "namespaces", "registration", "homeserver", "as_token", "ping"):
        assert any(line.startswith(f"[ok  ] {name}:") for line in lines), result.stdout
    assert "the homeserver reached the running bridge" in result.stdout


@pytest.mark.e2e
def test_doctor_pings_through_a_temporary_listener_when_the_bridge_is_down(anywhere_stack):
    stack = anywhere_stack
    stack.bridge.stop()
    try:
        result = anywhere(
            "doctor", "-c", str(stack.config_path), "-r", str(stack.registration_path)
        )
    finally:
        stack.bridge.start()
    assert result.returncode == 0, result.stdout
    assert "a temporary listener (the bridge is not running)" in result.stdout


@pytest.mark.e2e
def test_doctor_says_what_to_do_about_a_token_the_homeserver_refuses(anywhere_stack, tmp_path):
    config = yaml.safe_load(anywhere_stack.config_path.read_text())
    config["appservice"]["as_token"] = "not-the-registered-token"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(anywhere_stack.registration_path, tmp_path / "registration.yaml")
    result = anywhere("doctor", "-c", "config.yaml", "-r", "registration.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "[FAIL] registration:" in result.stdout  # the file no longer matches the config
    assert "[FAIL] as_token: the homeserver refused it" in result.stdout
    assert "app_service_config_files" in result.stdout


def test_policy_test_runs_cases_and_fails_on_a_mismatch(tmp_path):
    examples = ROOT / "policy" / "examples"
    rules, cases = examples / "korea-2012.rules.yaml", examples / "korea-2012.cases.yaml"
    result = anywhere("policy", "test", str(rules), str(cases))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mismatched" in result.stdout

    wrong = tmp_path / "wrong.cases.yaml"
    wrong.write_text(
        "cases:\n  - name: a 3G call on a cheap SKT plan\n    actor: '@kim:example.kr'\n"
        "    action: call.place\n"
        "    facts: {carrier: SKT, carrier_country: KR, plan_price: 45000, network: 3g}\n"
        "    expect: allow\n"
    )
    result = anywhere("policy", "test", str(rules), str(wrong))
    assert result.returncode == 1
    assert "a 3G call on a cheap SKT plan" in result.stdout

    broken = tmp_path / "broken.rules.yaml"
    broken.write_text("- type: plan_treshold\n")
    result = anywhere("policy", "test", str(broken), str(cases))
    assert result.returncode == 2
    assert "did you mean 'plan_threshold'" in result.stdout


@pytest.mark.e2e
async def test_run_keeps_the_database_and_the_drive_content_private(tmp_path):
    """Other local users can read nothing the bridge writes: its database and every file
    and folder of the drive's storage, though the bridge was started with umask 022."""
    from drive.people import DrivePerson

    from anywhere.bridge.testing.stack import Stack

    old = os.umask(0o022)
    try:
        stack = Stack(tmp_path, ["basics", "drive"])
        stack.start()
    finally:
        os.umask(old)
    try:
        alice = DrivePerson(await stack.user(), stack)
        try:
            room = await alice.new_folder("Secrets")
            event_id = await alice.send_file(room, "plan.txt", b"the plan " * 1000, "text/plain")
            assert "Saved plan.txt" in await alice.saved(room, event_id)
        finally:
            await alice.close()
    finally:
        stack.stop()
    data = tmp_path / "bridge" / "data"
    assert private(tmp_path / "bridge" / "config.yaml")
    assert private(tmp_path / "bridge" / "registration.yaml")
    written = [data, *data.rglob("*")]
    assert any(p.name == "anywhere.db" for p in written)
    drive_files = [p for p in (data / "drive").rglob("*") if p.is_file()]
    assert drive_files, "the drive stored nothing on disk"
    readable = [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in written if not private(p)]
    assert readable == []
