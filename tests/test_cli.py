"""The `anywhere` command line, as an operator uses it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bridge.testing.synapse import free_port

ROOT = Path(__file__).resolve().parent.parent


def anywhere(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
    assert (first / "config.yaml").stat().st_mode & 0o077 == 0  # secrets: owner only
    again = anywhere("init", cwd=first)
    assert again.returncode == 1
    assert "exists already; refusing to overwrite" in again.stderr


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
        [sys.executable, "-m", "bridge", "run", "-c", "config.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4)
        assert proc.poll() is None, "the bridge exited instead of waiting for the homeserver"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
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
