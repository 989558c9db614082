"""Registration generated from the config and the plugins' namespaces."""

import pytest

from anywhere.bridge.config import load_config
from anywhere.bridge.errors import ConfigError, PluginLoadError
from anywhere.bridge.namespaces import Namespaces, user_regex
from anywhere.bridge.registration import build_registration
from anywhere.bridge.runtime import load_plugins


def test_registration_claims_the_bot_and_the_ghost_namespace_exclusively(config_file):
    config = load_config(config_file, environ={})
    reg = build_registration(config, {})
    assert reg["sender_localpart"] == "anywhere"
    assert reg["rate_limited"] is False and reg["receive_ephemeral"] is True
    regexes = [ns["regex"] for ns in reg["namespaces"]["users"]]
    assert regexes == [r"@anywhere:example\.org", r"@anywhere_.*:example\.org"]
    assert all(ns["exclusive"] for ns in reg["namespaces"]["users"])


def test_overlapping_plugin_namespaces_are_an_error(config_file):
    config = load_config(config_file, environ={})
    claims = {
        "xmpp": Namespaces.of(users=[user_regex("anywhere_xmpp_", "example.org")]),
        "xmpp2": Namespaces.of(users=[user_regex("anywhere_xmpp", "example.org")]),
    }
    with pytest.raises(ConfigError, match="of xmpp overlaps"):
        build_registration(config, claims)


def test_separate_plugin_namespaces_are_fine(config_file):
    config = load_config(config_file, environ={})
    claims = {
        "xmpp": Namespaces.of(
            users=[user_regex("anywhere_xmpp_", "example.org")], aliases=[r"#xmpp_.*:example\.org"]
        ),
        "sms": Namespaces.of(users=[user_regex("anywhere_sms_", "example.org")]),
    }
    reg = build_registration(config, claims)
    # ghosts under the core prefix are already covered by it
    assert len(reg["namespaces"]["users"]) == 2
    assert reg["namespaces"]["aliases"] == [{"exclusive": True, "regex": r"#xmpp_.*:example\.org"}]


def test_a_plugin_claiming_the_bot_is_an_error(config_file):
    config = load_config(config_file, environ={})
    with pytest.raises(ConfigError, match="matches the bot"):
        build_registration(config, {"greedy": Namespaces.of(users=["@any.*:example\\.org"])})


def test_a_plugin_that_is_not_installed_stops_start_up_with_its_name(config_file):
    config = load_config(config_file, environ={"ANYWHERE__PLUGINS__ENABLED": "[basics, nosuch]"})
    with pytest.raises(PluginLoadError) as err:
        load_plugins(config)
    assert "'nosuch'" in str(err.value) and "not installed" in str(err.value)
    assert "basics" in str(err.value)  # lists what is installed
