"""The one config object: the packaged example as defaults, the operator's file merged on
top, then environment overrides, validated before anything starts.

Environment overrides: ``ANYWHERE__SECTION__KEY=value`` sets ``section.key``; levels are
separated by double underscores, names are case-insensitive, and the value is parsed as
YAML (so ``8080`` is a number and ``[a, b]`` a list).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from .errors import AnywhereError, ConfigError

PLACEHOLDER = "generate-with-anywhere-init"
#: The bridge's processes (``anywhere run``, ``anywhere dev``) create every file and folder
#: with this umask: owner only, so tokens, the database and the drive's content are never
#: readable by other local users, not even for a moment.
PRIVATE_UMASK = 0o077
ENV_PREFIX = "ANYWHERE__"
PERMISSION_LEVELS = ("none", "user", "admin")
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")


def write_private_file(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600) from the first byte.

    The file is written beside ``path`` under a temporary name created 0600 and renamed
    over it, so nobody ever sees it half-written or with wider permissions. With
    ``exclusive``, an existing ``path`` is an error (:class:`FileExistsError`).
    """
    path = Path(path)
    if exclusive and path.exists():
        raise FileExistsError(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if not exclusive:
            os.replace(temp, path)
            return
        try:
            os.link(temp, path)  # fails if path appeared meanwhile; never overwrites
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(temp, path)
            return
        temp.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def example_text() -> str:
    """The commented example config shipped with the package."""
    return resources.files("anywhere.bridge").joinpath("config.example.yaml").read_text("utf-8")


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


class ConfigErrors(ConfigError):
    """Several config errors, reported together so that one run shows all of them.

    ``errors`` holds each one; ``key``, ``expected``, ``found`` and ``hint`` are the first's.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        self.key, self.expected, self.found, self.hint = (
            first.key,
            first.expected,
            first.found,
            first.hint,
        )
        lines = "\n".join(f"  - {error}" for error in errors)
        AnywhereError.__init__(self, f"{len(errors)} problems in the config:\n{lines}")


class Problems:
    """Collects config errors instead of stopping at the first, and names the environment
    variable behind a value that came from one (``env_sources``: dotted key -> variable)."""

    def __init__(self, env_sources: Mapping[str, str] | None = None) -> None:
        self.errors: list[ConfigError] = []
        self.env_sources = dict(env_sources or {})

    def source_of(self, key: str) -> str | None:
        """The ``ANYWHERE__…`` variable that set ``key``, a key above it or one below it."""
        for dotted, variable in sorted(self.env_sources.items(), key=lambda kv: -len(kv[0])):
            if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + "."):
                return variable
        return None

    def add(self, error: ConfigError) -> None:
        variable = self.source_of(error.key) if isinstance(error.key, str) else None
        if variable is not None:
            hint = f"set by the environment variable {variable}"
            if error.hint:
                hint += f"; {error.hint}"
            error = ConfigError(error.key, error.expected, error.found, hint)
        self.errors.append(error)

    def check(
        self, condition: bool, key: str, expected: str, found: object, hint: str = ""
    ) -> None:
        """Add an error for ``key`` unless ``condition`` holds or ``key`` has one already."""
        if not condition and all(error.key != key for error in self.errors):
            self.add(ConfigError(key, expected, found, hint))

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Run a check that raises :class:`ConfigError` (a plugin's validator) and keep
        its error with the others."""
        try:
            yield
        except ConfigErrors as errors:
            for error in errors.errors:
                self.add(error)
        except ConfigError as error:
            self.add(error)

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` onto a copy of ``base``; mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_env_overrides(
    data: dict[str, Any],
    environ: Mapping[str, str],
    problems: Problems | None = None,
) -> dict[str, Any]:
    """``data`` with each ``ANYWHERE__…`` variable applied; with ``problems``, each dotted
    key set is recorded in ``problems.env_sources`` and bad values are collected there."""
    problems = problems if problems is not None else Problems()
    data = copy.deepcopy(data)
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        dotted = ".".join(path)
        problems.env_sources[dotted] = name
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            problems.add(ConfigError(dotted, "a YAML value", raw, str(exc).replace("\n", " ")))
            continue
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
    data: Mapping[str, Any],
    defaults: Mapping[str, Any],
    prefix: str,
    open_keys: set[str],
    problems: Problems | None = None,
) -> None:
    """Refuse keys the defaults do not have, and values of the wrong type.

    ``open_keys`` are dotted paths whose mappings take any keys (permissions, settings).
    Errors go to ``problems``; without it the first one is raised.
    """
    collect = problems if problems is not None else Problems()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else "remove it"
            collect.add(
                ConfigError(
                    dotted, f"one of {', '.join(map(str, defaults))}", f"unknown key {key!r}", hint
                )
            )
            continue
        default = defaults[key]
        if default is None:
            continue
        if isinstance(default, bool) or not isinstance(default, int | float):
            ok = isinstance(value, type(default))
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            collect.add(ConfigError(dotted, _type_name(default), value))
            if isinstance(data, dict):
                # so that the checks of the values can go on and report their errors too
                data[key] = copy.deepcopy(default)
            continue
        if isinstance(default, dict) and dotted not in open_keys:
            check_known_keys(value, default, dotted + ".", open_keys, collect)
    if problems is None:
        collect.raise_if_any()


class Config:
    """Validated configuration. Read values with ``config["section.key"]``."""

    def __init__(
        self,
        data: dict[str, Any],
        path: Path | None = None,
        env_sources: Mapping[str, str] | None = None,
    ) -> None:
        self.data = data
        self.path = path
        #: dotted key -> the ``ANYWHERE__…`` variable that set it
        self.env_sources = dict(env_sources or {})

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
    plugins are loaded, see :func:`apply_plugin_sections`). Every error found is reported
    at once (:class:`ConfigErrors` when there are several)."""
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
    return config_from_data(user, file_path, environ=environ, overrides=overrides)


def config_from_data(
    user: Mapping[str, Any],
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Validate a config given as data (what the file at ``path`` holds, or will hold:
    ``anywhere init`` checks its config before writing anything)."""
    defaults = example_defaults()
    merged = deep_merge(defaults, user)
    if overrides:
        merged = deep_merge(merged, overrides)
    problems = Problems()
    merged = apply_env_overrides(merged, os.environ if environ is None else environ, problems)
    check_known_keys(
        merged,
        defaults,
        "",
        {"bridge.permissions", "bridge.command_levels", "plugins.settings"},
        problems,
    )
    config = Config(merged, path, problems.env_sources)
    validate_core(config, problems)
    problems.raise_if_any()
    return config


def _check_url(config: Config, key: str, problems: Problems) -> None:
    value = config[key]
    parsed = urlparse(value)
    problems.check(
        isinstance(value, str)
        and parsed.scheme in ("http", "https")
        and bool(parsed.netloc)
        and not any(c.isspace() or not c.isprintable() for c in value),
        key,
        "an http:// or https:// URL",
        value,
    )


def validate_core(config: Config, problems: Problems | None = None) -> None:
    """Check the core's values; errors go to ``problems`` (raised here without it)."""
    collect = problems if problems is not None else Problems(config.env_sources)
    check = collect.check
    _check_url(config, "homeserver.url", collect)
    _check_url(config, "appservice.address", collect)
    domain = config["homeserver.domain"]
    check(
        bool(re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", domain)),
        "homeserver.domain",
        "a server name such as example.org",
        domain,
    )
    port = config["appservice.port"]
    check(
        isinstance(port, int) and 0 < port < 65536,
        "appservice.port",
        "a port number between 1 and 65535",
        port,
    )
    for key in ("appservice.as_token", "appservice.hs_token", "operations.token"):
        value = config[key]
        if value == PLACEHOLDER:
            check(
                False,
                key,
                "a secret token",
                value,
                "run `anywhere init` to generate one, or set it yourself",
            )
        else:
            check(len(value) >= 16, key, "at least 16 characters", f"{len(value)} characters")
    check(
        config["appservice.as_token"] != config["appservice.hs_token"],
        "appservice.hs_token",
        "a token different from appservice.as_token",
        "the same",
    )
    for key in ("appservice.bot.localpart", "appservice.ghost_prefix"):
        value = config[key]
        check(bool(LOCALPART_RE.match(value)), key, "lower-case letters, digits and ._=-/+", value)
    check(
        bool(re.fullmatch(r"[A-Za-z0-9_.\-]+", config["appservice.id"])),
        "appservice.id",
        "letters, digits, _ . -",
        config["appservice.id"],
    )
    check(
        config["bridge.command_prefix"] != "",
        "bridge.command_prefix",
        "a non-empty prefix such as '!'",
        "",
    )
    for pattern, level in config["bridge.permissions"].items():
        check(
            level in PERMISSION_LEVELS,
            f"bridge.permissions.{pattern}",
            " or ".join(PERMISSION_LEVELS),
            level,
        )
    for name, level in config["bridge.command_levels"].items():
        check(level in ("user", "admin"), f"bridge.command_levels.{name}", "user or admin", level)
    check(
        config["logging.format"] in ("console", "json"),
        "logging.format",
        "console or json",
        config["logging.format"],
    )
    check(
        str(config["logging.level"]).upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        "logging.level",
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
        config["logging.level"],
    )
    db_url = config["database.url"]
    check(
        db_url.split(":", 1)[0] in ("sqlite", "sqlite3", "postgres", "postgresql"),
        "database.url",
        "sqlite:FILE or postgres://user@host/db",
        db_url,
    )
    enabled = config["plugins.enabled"]
    check(
        all(isinstance(n, str) for n in enabled),
        "plugins.enabled",
        "a list of plugin names",
        enabled,
    )
    if problems is None:
        collect.raise_if_any()


def apply_plugin_sections(config: Config, sections: Mapping[str, ConfigSection]) -> None:
    """Merge each enabled plugin's defaults under its settings and run its validator; the
    errors of every plugin are reported together."""
    problems = Problems(config.env_sources)
    settings = config.data["plugins"]["settings"]
    packaged = example_defaults()["plugins"]["settings"]
    for name in list(settings):
        if name not in config["plugins.enabled"] and settings[name] == packaged.get(name):
            del settings[name]  # the example's own section of a plugin not enabled
            continue
        problems.check(
            name in sections or name in config["plugins.enabled"],
            f"plugins.settings.{name}",
            "settings of an enabled plugin",
            name,
            "add it to plugins.enabled or remove the section",
        )
    for name, section in sections.items():
        prefix = f"plugins.settings.{name}"
        given = settings.get(name) or {}
        if not isinstance(given, dict):
            problems.add(ConfigError(prefix, "a mapping", given))
            continue
        before = len(problems.errors)
        if not section.allow_extra_keys:
            check_known_keys(given, section.defaults, prefix + ".", set(), problems)
        if len(problems.errors) > before:
            continue  # its validator may rely on the keys and their types
        merged = deep_merge(section.defaults, given)
        if section.validate:
            with problems.collecting():
                section.validate(merged, prefix)
        settings[name] = merged
    problems.raise_if_any()


def new_token() -> str:
    """A fresh random secret for the config (tokens, keys)."""
    return secrets.token_urlsafe(32)


#: Written by ``anywhere init --xmpp-component-port``: the groups plugin's XMPP section,
#: with only the port filled in; the rest is the operator's (docs/networks.md).
XMPP_SECTION = """\
    groups:
      xmpp:
        # Set component_jid and secret as in Prosody's Component section, then
        # enabled: true (docs/networks.md, "For operators: XMPP with Prosody").
        enabled: false
        component_jid: ""
        secret: ""
        # Where the XMPP server listens for components (Prosody: component_ports).
        port: {port}
"""


def render_config(
    domain: str,
    homeserver_url: str,
    port: int | None = None,
    xmpp_component_port: int | None = None,
) -> str:
    """The example config with fresh tokens and the given homeserver filled in; with
    ``xmpp_component_port``, the groups plugin enabled and its XMPP section's port set."""
    text = example_text()
    while PLACEHOLDER in text:
        text = text.replace(PLACEHOLDER, new_token(), 1)
    # The policy plugin's key for phone-number hashes: its own secret, not in the registration.
    text = re.sub(r'(?m)^(        salt: )""$', lambda m: m[1] + new_token(), text)
    # The key the bot's encryption keys are pickled with (docs/encryption.md).
    text = re.sub(r'(?m)^(  pickle_key: )""$', lambda m: m[1] + new_token(), text)
    # Functions as replacements: the values are inserted as they are, never as escapes.
    text = re.sub(r"(?m)^(  url: )http://127\.0\.0\.1:8008$", lambda m: m[1] + homeserver_url, text)
    text = re.sub(r"(?m)^(  domain: )example\.org$", lambda m: m[1] + domain, text)
    text = re.sub(r'(?m)^(    )"example\.org": user$', lambda m: f'{m[1]}"{domain}": user', text)
    if port is not None:
        text = text.replace("127.0.0.1:29340", f"127.0.0.1:{port}")
        text = re.sub(r"(?m)^(  port: )29340$", rf"\g<1>{port}", text)
    if xmpp_component_port is not None:
        text = re.sub(r"(?m)^(    - policy\n)", lambda m: m[1] + "    - groups\n", text, count=1)
        section = XMPP_SECTION.format(port=int(xmpp_component_port))
        text = re.sub(r"(?m)^(  settings:\n)", lambda m: m[1] + section, text, count=1)
    return text
