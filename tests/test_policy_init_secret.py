"""`anywhere init` gives the policy plugin its own random key for phone-number hashes,
kept out of the registration; the dev senders warn outside the dev stack; the file
outbox is pruned; the key's placeholder is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anywhere.bridge.errors import ConfigError
from anywhere.plugins.policy.senders import dev_sender_warning, prune_outbox
from anywhere.plugins.policy.settings import DEFAULTS, validate

ROOT = Path(__file__).resolve().parent.parent


def test_init_writes_a_dedicated_random_salt_kept_out_of_the_registration(tmp_path):
    salts = []
    for n in (1, 2):
        folder = tmp_path / f"init{n}"
        result = subprocess.run(
            [sys.executable, "-m", "anywhere", "init", "-c", str(folder / "config.yaml")]
            + ["--domain", "example.org", "--homeserver", "http://127.0.0.1:8008"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        config = yaml.safe_load((folder / "config.yaml").read_text())
        salt = config["plugins"]["settings"]["policy"]["verification"]["salt"]
        assert len(salt) >= 32
        registration = (folder / "registration.yaml").read_text()
        assert salt not in registration
        assert salt not in (config["appservice"]["hs_token"], config["appservice"]["as_token"])
        salts.append(salt)
    assert salts[0] != salts[1]


def test_the_placeholder_is_refused_as_a_key():
    section = json.loads(json.dumps(DEFAULTS))
    section["verification"]["salt"] = "generate-with-anywhere-init"
    with pytest.raises(ConfigError, match="verification.salt.*anywhere init"):
        validate(section, "plugins.settings.policy")


@pytest.mark.parametrize(
    ("sender", "domain", "url", "warns"),
    [
        ("log", "localhost", "http://127.0.0.1:8008", False),  # the dev stack
        ("file", "localhost", "http://localhost:8008", False),
        ("log", "example.org", "https://matrix.example.org", True),
        ("file", "localhost", "https://matrix.example.org", True),
        ("http", "example.org", "https://matrix.example.org", False),
    ],
)
def test_clear_text_senders_warn_loudly_outside_the_dev_stack(sender, domain, url, warns):
    settings = {"sender": sender, "outbox": "/var/tmp/outbox.jsonl"}
    warning = dev_sender_warning(settings, domain, url)
    assert (warning is not None) is warns
    if warns:
        assert "in clear" in warning and "dev stack only" in warning and "sender: http" in warning


def test_the_file_outbox_is_pruned_of_expired_codes(tmp_path):
    outbox = tmp_path / "outbox.jsonl"
    lines = [{"to": "+8210", "code": str(n), "time": 1000.0 + n * 100} for n in range(5)]
    outbox.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert prune_outbox(outbox, before=1250.0) == 3
    kept = [json.loads(line)["code"] for line in outbox.read_text().splitlines()]
    assert kept == ["3", "4"]
    assert prune_outbox(tmp_path / "missing.jsonl", before=0) == 0
