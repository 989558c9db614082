"""The one config object: the packaged example as defaults, the operator's file merged on
top, then environment overrides, validated before anything starts.

Environment overrides: ``ANYWHERE__SECTION__KEY=value`` sets ``section.key``; levels are
separated by double underscores, names are case-insensitive, and the value is parsed as
YAML (so ``8080`` is a number and ``[a, b]`` a list).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from .errors import ConfigError

PLACEHOLDER = "generate-with-anywhere-init"
ENV_PREFIX = "ANYWHERE__"
PERMISSION_LEVELS = ("none", "user", "admin")
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")


def example_text() -> str:
    """The commented example config shipped with the package."""
    return resources.files("bridge").joinpath("config.example.yaml").read_text("utf-8")


def example_defaults() -> dict[str, Any]:
    return yaml.safe_load(example_text())


@dataclass
class ConfigSection:
    """A plugin's own config section, under ``plugins.settings.<name>``.

    ``defaults`` is merged under what the operator wrote; ``validate`` receives the merged
    section and the dotted key prefix and raises :class:`ConfigError` on a bad value.
    Keys not present in ``defaults`` are refused unless ``allow_extra_keys`` is set.
    """

    defaults: dict[str, Any] = field(default_factory=dict)
    validate: Callable[[dict[str, Any], str], None] | None = None
    allow_extra_keys: bool = False


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` onto a copy of ``base``; mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                ".".join(path), "a YAML value", raw, f"from environment variable {name}: {exc}"
            ) from exc
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return data


def _type_name(value: Any) -> str:
    return {
        bool: "true or false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def check_known_keys(
    data: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str, open_keys: set[str]
) -> None:
    """Refuse keys the defaults do not have, and values of the wrong type.

    ``open_keys`` are dotted paths whose mappings take any keys (permissions, settings).
    """
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else "remove it"
            raise ConfigError(
                dotted, f"one of {', '.join(map(str, defaults))}", f"unknown key {key!r}", hint
            )
        default = defaults[key]
        if default is None or dotted in open_keys:
            continue
        if isinstance(default, bool) or not isinstance(default, int | float):
            ok = isinstance(value, type(default))
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(dotted, _type_name(default), value)
        if isinstance(default, dict):
            check_known_keys(value, default, dotted + ".", open_keys)


class Config:
    """Validated configuration. Read values with ``config["section.key"]``."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path

    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(dotted)
            node = node[part]
        return node

    def get(self, dotted: str, default: Any = None) -> Any:
        try:
            return self[dotted]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def data_dir(self) -> Path:
        path = Path(self["data_dir"]).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def bot_mxid(self) -> str:
        return f"@{self['appservice.bot.localpart']}:{self['homeserver.domain']}"

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved inside ``data_dir``."""
        url: str = self["database.url"]
        scheme, _, rest = url.partition(":")
        if scheme not in ("sqlite", "sqlite3"):
            return url
        rest = rest[2:] if rest.startswith("//") else rest
        if rest in ("", ":memory:"):
            return "sqlite::memory:"
        path = Path(rest).expanduser()
        return f"sqlite:{path if path.is_absolute() else self.data_dir / path}"

    def plugin_settings(self, name: str) -> dict[str, Any]:
        return self.data["plugins"]["settings"].get(name, {})


def load_config(
    path: Path | str | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, merge and validate the core config (plugin sections are validated when the
    plugins are loaded, see :func:`apply_plugin_sections`)."""
    defaults = example_defaults()
    user: dict[str, Any] = {}
    file_path = Path(path).resolve() if path else None
    if file_path is not None:
        if not file_path.exists():
            raise ConfigError(
                "config file",
                "an existing file",
                str(file_path),
                "run `anywhere init` to create one, or pass -c PATH",
            )
        try:
            user = yaml.safe_load(file_path.read_text("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(str(file_path), "valid YAML", None, str(exc)) from exc
        if not isinstance(user, dict):
            raise ConfigError(str(file_path), "a mapping of sections", type(user).__name__)
    merged = deep_merge(defaults, user)
    if overrides:
        merged = deep_merge(merged, overrides)
    merged = apply_env_overrides(merged, os.environ if environ is None else environ)
    check_known_keys(
        merged, defaults, "", {"bridge.permissions", "bridge.command_levels", "plugins.settings"}
    )
    config = Config(merged, file_path)
    validate_core(config)
    return config


def _require(condition: bool, key: str, expected: str, found: object, hint: str = "") -> None:
    if not condition:
        raise ConfigError(key, expected, found, hint)


def _check_url(config: Config, key: str) -> None:
    value = config[key]
    parsed = urlparse(value)
    _require(
        parsed.scheme in ("http", "https") and bool(parsed.netloc),
        key,
        "an http:// or https:// URL",
        value,
    )


def validate_core(config: Config) -> None:
    _check_url(config, "homeserver.url")
    _check_url(config, "appservice.address")
    domain = config["homeserver.domain"]
    _require(
        bool(re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", domain)),
        "homeserver.domain",
        "a server name such as example.org",
        domain,
    )
    port = config["appservice.port"]
    _require(
        isinstance(port, int) and 0 < port < 65536,
        "appservice.port",
        "a port number between 1 and 65535",
        port,
    )
    for key in ("appservice.as_token", "appservice.hs_token", "operations.token"):
        value = config[key]
        _require(
            value != PLACEHOLDER,
            key,
            "a secret token",
            value,
            "run `anywhere init` to generate one, or set it yourself",
        )
        _require(len(value) >= 16, key, "at least 16 characters", f"{len(value)} characters")
    _require(
        config["appservice.as_token"] != config["appservice.hs_token"],
        "appservice.hs_token",
        "a token different from appservice.as_token",
        "the same",
    )
    for key in ("appservice.bot.localpart", "appservice.ghost_prefix"):
        value = config[key]
        _require(
            bool(LOCALPART_RE.match(value)), key, "lower-case letters, digits and ._=-/+", value
        )
    _require(
        bool(re.fullmatch(r"[A-Za-z0-9_.\-]+", config["appservice.id"])),
        "appservice.id",
        "letters, digits, _ . -",
        config["appservice.id"],
    )
    _require(
        config["bridge.command_prefix"] != "",
        "bridge.command_prefix",
        "a non-empty prefix such as '!'",
        "",
    )
    for pattern, level in config["bridge.permissions"].items():
        _require(
            level in PERMISSION_LEVELS,
            f"bridge.permissions.{pattern}",
            " or ".join(PERMISSION_LEVELS),
            level,
        )
    for name, level in config["bridge.command_levels"].items():
        _require(
            level in ("user", "admin"), f"bridge.command_levels.{name}", "user or admin", level
        )
    _require(
        config["logging.format"] in ("console", "json"),
        "logging.format",
        "console or json",
        config["logging.format"],
    )
    _require(
        str(config["logging.level"]).upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        "logging.level",
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
        config["logging.level"],
    )
    db_url = config["database.url"]
    _require(
        db_url.split(":", 1)[0] in ("sqlite", "sqlite3", "postgres", "postgresql"),
        "database.url",
        "sqlite:FILE or postgres://user@host/db",
        db_url,
    )
    enabled = config["plugins.enabled"]
    _require(
        all(isinstance(n, str) for n in enabled),
        "plugins.enabled",
        "a list of plugin names",
        enabled,
    )


def apply_plugin_sections(config: Config, sections: Mapping[str, ConfigSection]) -> None:
    """Merge each enabled plugin's defaults under its settings and run its validator."""
    settings = config.data["plugins"]["settings"]
    packaged = example_defaults()["plugins"]["settings"]
    for name in list(settings):
        if name not in config["plugins.enabled"] and settings[name] == packaged.get(name):
            del settings[name]  # the example's own section of a plugin not enabled
            continue
        if name not in sections and name not in config["plugins.enabled"]:
            raise ConfigError(
                f"plugins.settings.{name}",
                "settings of an enabled plugin",
                name,
                "add it to plugins.enabled or remove the section",
            )
    for name, section in sections.items():
        prefix = f"plugins.settings.{name}"
        given = settings.get(name) or {}
        if not isinstance(given, dict):
            raise ConfigError(prefix, "a mapping", given)
        if not section.allow_extra_keys:
            check_known_keys(given, section.defaults, prefix + ".", set())
        merged = deep_merge(section.defaults, given)
        if section.validate:
            section.validate(merged, prefix)
        settings[name] = merged
