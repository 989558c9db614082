"""The homeserver settings encrypted rooms need: in the registration, the test harness's
Synapse and the config `anywhere init` writes (docs/encryption.md)."""

import subprocess
import sys

import yaml

from anywhere.bridge.config import load_config
from anywhere.bridge.registration import build_registration
from anywhere.bridge.testing.synapse import Synapse


def test_registration_asks_for_device_management_transaction_extensions_and_ephemeral(
    config_file,
):
    reg = build_registration(load_config(config_file, environ={}), {})
    assert reg["io.element.msc4190"] is True
    assert reg["org.matrix.msc3202"] is True
    assert reg["receive_ephemeral"] is True


def test_test_synapse_enables_to_device_and_key_counts_for_appservices(tmp_path):
    config = Synapse(tmp_path / "hs").build_config()
    assert config["experimental_features"] == {
        "msc3202_transaction_extensions": True,
        "msc2409_to_device_messages_enabled": True,
    }


def test_init_writes_a_fresh_pickle_key_and_the_flags(tmp_path):
    keys = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "anywhere", "init", "--domain", "corp.example"],
            cwd=tmp_path / folder,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load((tmp_path / folder / "config.yaml").read_text())
        keys.append(config["encryption"]["pickle_key"])
    assert len(keys[0]) >= 32 and keys[0] != keys[1]
    registration = yaml.safe_load((tmp_path / "a" / "registration.yaml").read_text())
    assert registration["io.element.msc4190"] is True
    assert keys[0] not in (tmp_path / "a" / "registration.yaml").read_text()


def test_doctor_names_each_missing_registration_setting_for_encrypted_rooms(tmp_path):
    def doctor() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "anywhere", "doctor", "-c", "config.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        lines = [line for line in result.stdout.splitlines() if "] encryption:" in line]
        assert lines, result.stdout + result.stderr
        return lines[0]

    init = subprocess.run(
        [sys.executable, "-m", "anywhere", "init", "--domain", "corp.example"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    assert doctor().startswith("[ok  ] encryption:")
    registration = tmp_path / "registration.yaml"
    data = yaml.safe_load(registration.read_text())
    del data["io.element.msc4190"]
    data["org.matrix.msc3202"] = False
    registration.write_text(yaml.safe_dump(data))
    line = doctor()
    assert line.startswith("[FAIL] encryption:")
    assert "io.element.msc4190: true" in line and "org.matrix.msc3202: true" in line
    assert "receive_ephemeral" not in line
    config = tmp_path / "config.yaml"
    text = config.read_text()
    key = yaml.safe_load(text)["encryption"]["pickle_key"]
    config.write_text(text.replace(key, '""'))
    assert "encryption.pickle_key is empty" in doctor()
