"""The homeserver settings encrypted rooms need: in the registration, the test harness's
Synapse and the config `anywhere init` writes (docs/encryption.md)."""

import subprocess
import sys

import yaml

from bridge.config import load_config
from bridge.registration import build_registration
from bridge.testing.synapse import Synapse


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
            [sys.executable, "-m", "bridge", "init", "--domain", "corp.example"],
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
