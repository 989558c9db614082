"""Shared test set-up. The Synapse/bridge fixtures come from Anywhere's own pytest plugin
(``anywhere.bridge.testing.fixtures``, entry point ``pytest11``), exactly as plugin authors get
them."""

from __future__ import annotations

import pytest

from anywhere.bridge.cli import render_config


@pytest.fixture(scope="session")
def anywhere_enabled_plugins() -> list[str]:
    return ["basics", "hello", "policy"]


@pytest.fixture(scope="session")
def anywhere_bridge_config() -> dict:
    return {
        "bridge": {
            "permissions": {
                "localhost": "user",
                "@outsider:localhost": "none",
                "@operator:localhost": "admin",
            }
        }
    }


@pytest.fixture
def config_file(tmp_path):
    """A valid config file (fresh tokens) in a temporary folder."""
    path = tmp_path / "config.yaml"
    path.write_text(render_config("example.org", "http://127.0.0.1:8008"), "utf-8")
    return path
