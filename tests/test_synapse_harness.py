"""The real-Synapse harness in anywhere.bridge.testing.synapse: start, register, log in, stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from anywhere.bridge.testing.synapse import Synapse, SynapseError, free_port

WHOAMI = "/_matrix/client/v3/account/whoami"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    hs = Synapse(tmp_path_factory.mktemp("synapse"))
    started = time.monotonic()
    hs.start()
    print(f"Synapse started in {time.monotonic() - started:.2f}s at {hs.url}")
    try:
        yield hs
    finally:
        hs.stop()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_register_whoami_reregister_and_stop(synapse: Synapse) -> None:
    assert synapse.is_running()
    status, versions = synapse.request("GET", "/_matrix/client/versions")
    assert status == 200 and versions["versions"]

    admin = synapse.register_user("boss", "admin-pw", admin=True, displayname="The Boss")
    user = synapse.register_user("worker", "user-pw")
    assert set(admin) == set(user) == {"user_id", "access_token", "device_id"}
    assert admin["user_id"] == "@boss:localhost"
    assert user["user_id"] == "@worker:localhost"

    for who in (admin, user):
        status, body = synapse.request("GET", WHOAMI, access_token=who["access_token"])
        assert status == 200, body
        assert body["user_id"] == who["user_id"]
        assert body["device_id"] == who["device_id"]

    # The admin flag really took: only the admin may use the admin API.
    status, _ = synapse.request(
        "GET", f"/_synapse/admin/v2/users/{user['user_id']}", access_token=admin["access_token"]
    )
    assert status == 200
    status, body = synapse.request(
        "GET", f"/_synapse/admin/v2/users/{admin['user_id']}", access_token=user["access_token"]
    )
    assert status == 403, body

    # Registering an existing user logs it in instead: same user, new device.
    again = synapse.register_user("worker", "user-pw")
    assert set(again) == {"user_id", "access_token", "device_id"}
    assert again["user_id"] == user["user_id"]
    assert again["device_id"] != user["device_id"]
    status, body = synapse.request("GET", WHOAMI, access_token=again["access_token"])
    assert status == 200 and body["user_id"] == user["user_id"]

    # A wrong password for an existing user is an error, not a silent success.
    with pytest.raises(SynapseError, match="M_FORBIDDEN"):
        synapse.register_user("worker", "wrong-pw")

    synapse.stop()
    assert not synapse.is_running()
    assert not _port_open(synapse.host, synapse.port)
    synapse.stop()  # safe to call twice


def test_write_config_keeps_secrets(tmp_path: Path) -> None:
    first = Synapse(tmp_path, port=free_port(), app_service_config_files=[tmp_path / "reg.yaml"])
    first.write_config()
    config = yaml.safe_load(first.config_path.read_text())
    assert config["registration_shared_secret"] == first.registration_shared_secret
    assert config["app_service_config_files"] == [str(tmp_path / "reg.yaml")]
    assert config["trusted_key_servers"] == []
    assert config["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
    assert config["rc_login"]["address"]["burst_count"] >= 1000

    second = Synapse(tmp_path, extra_config={"rc_message": {"per_second": 1}})
    second.write_config()
    config2 = yaml.safe_load(second.config_path.read_text())
    assert second.registration_shared_secret == first.registration_shared_secret
    assert second.port == first.port  # port reused when none is given
    for key in ("registration_shared_secret", "macaroon_secret_key", "form_secret"):
        assert config2[key] == config[key]
    # extra_config is merged into nested sections, not replacing them
    assert config2["rc_message"] == {"per_second": 1, "burst_count": 100_000}


def test_start_failures_are_explained(tmp_path: Path) -> None:
    missing = tmp_path / "missing-registration.yaml"
    with pytest.raises(SynapseError, match="registration file"):
        Synapse(tmp_path / "a", app_service_config_files=[missing]).start()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SynapseError, match="already in use"):
            Synapse(tmp_path / "b", port=port).start()

    broken = Synapse(tmp_path / "c", extra_config={"database": {"name": "nosuchdb"}})
    with pytest.raises(SynapseError, match="Unsupported database type") as err:
        broken.start()
    assert str(broken.log_path) in str(err.value)
    assert not broken.is_running()
