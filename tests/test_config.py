"""Config: merged onto the packaged defaults, validated with errors that name the key."""

import pytest
import yaml

from anywhere.bridge.config import (
    ConfigErrors,
    ConfigSection,
    apply_plugin_sections,
    example_defaults,
    load_config,
)
from anywhere.bridge.errors import ConfigError


def write(path, **changes):
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_fresh_config_is_valid_and_merged_onto_the_defaults(config_file):
    config = load_config(config_file, environ={})
    assert config["appservice.port"] == 29340
    assert config["bridge.command_prefix"] == "!"
    assert config.bot_mxid == "@anywhere:example.org"
    assert config.database_url == f"sqlite:{config_file.parent / 'data' / 'anywhere.db'}"


def test_the_example_placeholders_are_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(example_defaults()))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "appservice.as_token" in str(err.value)
    assert "anywhere init" in str(err.value)


def test_an_unknown_key_names_the_key_and_suggests_the_right_one(config_file):
    write(config_file, appservice__prot=8080)
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={})
    assert "appservice.prot" in str(err.value)
    assert "did you mean appservice.port?" in str(err.value)


def test_a_wrong_type_says_what_was_found_and_expected(config_file):
    write(config_file, appservice__port="eighty")
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={})
    assert str(err.value) == "appservice.port: expected a number, found 'eighty'"


def test_a_bad_permission_level_is_refused(config_file):
    write(config_file, bridge__permissions={"example.org": "superuser"})
    with pytest.raises(
        ConfigError,
        match="bridge.permissions.example.org: expected none or user or admin, found 'superuser'",
    ):
        load_config(config_file, environ={})


def test_environment_variables_override_keys(config_file):
    config = load_config(
        config_file,
        environ={
            "ANYWHERE__APPSERVICE__PORT": "30001",
            "ANYWHERE__LOGGING__LEVEL": "DEBUG",
            "UNRELATED": "x",
        },
    )
    assert config["appservice.port"] == 30001
    assert config["logging.level"] == "DEBUG"


def test_an_environment_override_is_validated_too(config_file):
    with pytest.raises(ConfigError, match="logging.format: expected console or json"):
        load_config(config_file, environ={"ANYWHERE__LOGGING__FORMAT": "xml"})


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="anywhere init"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_plugin_sections_are_merged_and_validated_by_the_plugin(config_file):
    write(config_file, plugins__settings={"hello": {"greeting": 5}})
    config = load_config(config_file, environ={})
    config.data["plugins"]["enabled"].append("hello")

    def validate(section, prefix):
        if not isinstance(section["greeting"], str):
            raise ConfigError(f"{prefix}.greeting", "a string", section["greeting"])

    with pytest.raises(ConfigError, match="plugins.settings.hello.greeting: expected a string"):
        apply_plugin_sections(config, {"hello": ConfigSection({"greeting": "Hi"}, validate)})


def test_a_plugin_section_refuses_unknown_keys(config_file):
    write(config_file, plugins__settings={"hello": {"greting": "Hey"}})
    config = load_config(config_file, environ={})
    config.data["plugins"]["enabled"].append("hello")
    with pytest.raises(ConfigError, match="did you mean plugins.settings.hello.greeting"):
        apply_plugin_sections(config, {"hello": ConfigSection({"greeting": "Hi"})})


def test_settings_for_a_plugin_that_is_not_enabled_are_refused(config_file):
    write(config_file, plugins__settings={"drive": {}})
    config = load_config(config_file, environ={})
    with pytest.raises(ConfigError, match="add it to plugins.enabled"):
        apply_plugin_sections(config, {})


def test_every_error_is_reported_at_once_not_only_the_first(config_file):
    write(
        config_file,
        appservice__port="eighty",
        appservice__prot=1,
        homeserver__domain="not a domain",
        logging__format="xml",
    )
    with pytest.raises(ConfigErrors) as err:
        load_config(config_file, environ={"ANYWHERE__HOMESERVER__URL": "ftp://x"})
    message = str(err.value)
    assert message.startswith("5 problems in the config:")
    for expected in (
        "appservice.port: expected a number, found 'eighty'",
        "did you mean appservice.port?",
        "homeserver.domain: expected a server name",
        "logging.format: expected console or json, found 'xml'",
        "homeserver.url: expected an http:// or https:// URL, found 'ftp://x'",
    ):
        assert expected in message
    assert [e.key for e in err.value.errors] == [
        "appservice.port",
        "appservice.prot",
        "homeserver.url",
        "homeserver.domain",
        "logging.format",
    ]


def test_an_error_from_an_environment_variable_names_the_variable(config_file):
    with pytest.raises(ConfigError) as err:
        load_config(
            config_file,
            environ={"ANYWHERE__APPSERVICE__PORT": "many", "ANYWHERE__APPSERVICE__PROT": "1"},
        )
    message = str(err.value)
    assert (
        "appservice.port: expected a number, found 'many' — set by the environment "
        "variable ANYWHERE__APPSERVICE__PORT" in message
    )
    assert (
        "appservice.prot: expected one of" in message
        and "set by the environment variable ANYWHERE__APPSERVICE__PROT; did you mean "
        "appservice.port?"
        in message
    )
    write(config_file, logging__format="xml")
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={})
    assert "environment variable" not in str(err.value)  # this one is the file's


def test_a_plugin_setting_from_the_environment_names_the_variable(config_file):
    config = load_config(config_file, environ={"ANYWHERE__PLUGINS__SETTINGS__HELLO__GREETING": "5"})
    config.data["plugins"]["enabled"].append("hello")

    def validate(section, prefix):
        if not isinstance(section["greeting"], str):
            raise ConfigError(f"{prefix}.greeting", "a string", section["greeting"])

    with pytest.raises(ConfigError, match="ANYWHERE__PLUGINS__SETTINGS__HELLO__GREETING"):
        apply_plugin_sections(config, {"hello": ConfigSection({"greeting": "Hi"}, validate)})


def test_the_errors_of_every_plugin_section_are_reported_together(config_file):
    write(config_file, plugins__settings={"hello": {"greting": "Hey"}, "bye": {"words": 5}})
    config = load_config(config_file, environ={})
    config.data["plugins"]["enabled"] += ["hello", "bye"]

    def validate(section, prefix):
        raise ConfigError(f"{prefix}.words", "a string", section["words"])

    with pytest.raises(ConfigErrors) as err:
        apply_plugin_sections(
            config,
            {
                "hello": ConfigSection({"greeting": "Hi"}),
                "bye": ConfigSection({"words": "Bye"}, validate),
            },
        )
    assert [e.key for e in err.value.errors] == [
        "plugins.settings.hello.greting",
        "plugins.settings.bye.words",
    ]
