"""``anywhere`` — the command line: init, run, dev, doctor."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from .config import PRIVATE_UMASK, load_config, render_config, write_private_file
from .errors import AnywhereError, StorageError


def _private_files() -> None:
    """Everything this process creates from now on (config, registration, the database,
    the drive's content, a dev Synapse's state) is readable by its owner only."""
    os.umask(PRIVATE_UMASK)


def _registration_path(args: argparse.Namespace) -> Path:
    """``-r``, or ``registration.yaml`` beside the config file."""
    if args.registration:
        return Path(args.registration)
    return Path(args.config).parent / "registration.yaml"


#: ``anywhere init`` options behind config keys, so an error names what the person typed.
INIT_OPTIONS = {"homeserver.domain": "--domain", "homeserver.url": "--homeserver"}


def cmd_init(args: argparse.Namespace) -> int:
    import yaml

    from .config import ConfigErrors, config_from_data
    from .errors import ConfigError
    from .registration import build_registration, registration_text
    from .runtime import load_plugins, plugin_namespaces

    config_path, reg_path = Path(args.config), _registration_path(args)
    for path in (config_path, reg_path):
        if path.exists():
            print(
                f"error: {path} exists already; refusing to overwrite it. Move it away or "
                "pass another path (-c / -r).",
                file=sys.stderr,
            )
            return 1
    # Everything is checked before anything is written: an error leaves no file behind.
    try:
        # the options checked on their own first: only valid values go into the text
        data = yaml.safe_load(render_config("example.org", "http://127.0.0.1:8008"))
        data["homeserver"].update(domain=args.domain, url=args.homeserver)
        data["bridge"]["permissions"] = {args.domain: "user"}
        config_from_data(data, config_path.resolve(), environ={})
        text = render_config(
            args.domain, args.homeserver, xmpp_component_port=args.xmpp_component_port
        )
        config = config_from_data(yaml.safe_load(text), config_path.resolve(), environ={})
        manager = load_plugins(config)
        registration = registration_text(
            build_registration(config, plugin_namespaces(config, manager))
        )
    except ConfigError as exc:
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        for error in errors:
            option = INIT_OPTIONS.get(error.key)
            where = f"{option}: expected {error.expected}" if option else str(error)
            found = f", found {error.found!r}" if option and error.found is not None else ""
            print(f"error: {where}{found}", file=sys.stderr)
        print("Nothing was written; run it again with the value fixed.", file=sys.stderr)
        return 2
    _private_files()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    reg_path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(config_path, text, exclusive=True)
    try:
        write_private_file(reg_path, registration, exclusive=True)
    except BaseException:
        config_path.unlink()  # the pair or nothing: a rerun must not meet a lone config
        raise
    print(f"Wrote {config_path} (fresh tokens) and {reg_path}.")
    print(
        "Next: add the registration to your homeserver (Synapse: app_service_config_files "
        "in homeserver.yaml), restart it, then run `anywhere run -c "
        f"{config_path}` and check with `anywhere doctor -c {config_path}`."
    )
    return 0


def cmd_registration(args: argparse.Namespace) -> int:
    from .registration import build_registration, write_registration
    from .runtime import load_plugins, plugin_namespaces

    _private_files()
    config = load_config(args.config)
    manager = load_plugins(config)
    reg_path = _registration_path(args)
    write_registration(reg_path, build_registration(config, plugin_namespaces(config, manager)))
    print(f"Wrote {reg_path}; restart the homeserver to load it.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .logging import setup_logging
    from .runtime import Bridge

    _private_files()
    config = load_config(args.config)
    setup_logging(config["logging.format"], config["logging.level"])
    bridge = Bridge(config)
    asyncio.run(bridge.run_forever())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return asyncio.run(run_doctor(Path(args.config), _registration_path(args)))


def cmd_dev(args: argparse.Namespace) -> int:
    from .devstack import run_dev
    from .devsynapse import SynapseError

    _private_files()
    try:
        return asyncio.run(run_dev(Path(args.dir), args.person))
    except SynapseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _localpart(value: str) -> str:
    from .config import LOCALPART_RE

    if not LOCALPART_RE.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a user name: use lower-case letters, digits and ._=-/+"
        )
    return value


def _tcp_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a TCP port: use a whole number from 1 to 65535 (Prosody's "
            "component_ports); nothing was written"
        )
    return port


def _shows_default(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.default not in (
        None,
        False,
        [],
        argparse.SUPPRESS,
    )


class HelpWithDefaults(argparse.HelpFormatter):
    """Help text that ends with each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text and _shows_default(action) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class AnywhereParser(argparse.ArgumentParser):
    """The parser of ``anywhere`` and of every subcommand, plugins' ones included."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)
        #: what ``add_subparsers`` returned, for plugins' subcommands (``anywhere_cli``)
        self.commands: Any = None

    def add_subparsers(self, **kwargs) -> Any:
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and _shows_default(action):
            action.help = "(default: %(default)s)"  # an option without help still shows it
        return action


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anywhere-bridge")
    except PackageNotFoundError:
        return "unknown (not installed)"


CONFIG_HELP = "the bridge's config file"


def _registration_help(what: str) -> str:
    return f"the registration file {what} (default: registration.yaml beside the config file)"


def build_parser() -> AnywhereParser:
    parser = AnywhereParser(
        prog="anywhere",
        description="Anywhere: smart-work tools for Matrix clients, as an application service.",
    )
    parser.add_argument("--version", action="version", version=f"anywhere {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=AnywhereParser)

    p = sub.add_parser("init", help="write config.yaml (fresh tokens) and registration.yaml")
    p.add_argument("-c", "--config", default="config.yaml", help="the config file to write")
    p.add_argument("-r", "--registration", help=_registration_help("to write"))
    p.add_argument(
        "--domain",
        default="example.org",
        help="your homeserver's server name (the part after ':' in user IDs)",
    )
    p.add_argument(
        "--homeserver",
        default="http://127.0.0.1:8008",
        help="the homeserver's client-server URL as the bridge reaches it",
    )
    p.add_argument(
        "--xmpp-component-port",
        type=_tcp_port,
        metavar="PORT",
        help="bridge XMPP: enable the groups plugin with its XMPP section's port set "
        "(where the XMPP server listens for components; Prosody's component_ports); "
        "then fill in component_jid and secret (docs/networks.md) (default: no XMPP "
        "section, and the bridge uses port 5347, Prosody's default)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("registration", help="(re)write registration.yaml from config.yaml")
    p.add_argument("-c", "--config", default="config.yaml", help=CONFIG_HELP)
    p.add_argument("-r", "--registration", help=_registration_help("to write"))
    p.set_defaults(func=cmd_registration)

    p = sub.add_parser("run", help="run the bridge")
    p.add_argument("-c", "--config", default="config.yaml", help=CONFIG_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "doctor",
        help="check the config, the registration, the homeserver and what each plugin needs",
    )
    p.add_argument("-c", "--config", default="config.yaml", help=CONFIG_HELP)
    p.add_argument("-r", "--registration", help=_registration_help("to compare with the config"))
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("dev", help="run a local Synapse, the bridge and demo people")
    p.add_argument("--dir", default=".anywhere-dev", help="folder for all the local state")
    p.add_argument(
        "--person",
        action="append",
        default=[],
        type=_localpart,
        metavar="NAME",
        help="add a demo person @NAME:localhost besides demo and demo2 (repeat for more; "
        "kept in the folder)",
    )
    p.set_defaults(func=cmd_dev)

    return parser


CORE_COMMANDS = {"init", "registration", "run", "doctor", "dev"}


def add_plugin_commands(parser: AnywhereParser, command: str | None) -> None:
    """Let installed plugins add their subcommands (``anywhere_cli``).

    A command named like a plugin (``anywhere drive ...``) loads only that plugin, so the
    command starts fast; anything else (``--help``, a typo) loads them all.
    """
    from .pluginmanager import PluginManager, available_plugins

    available = available_plugins()
    chosen = {command: available[command]} if command in available else available
    manager = PluginManager()
    for name, entry in chosen.items():
        try:
            manager.register(entry.load(), name)
        except Exception as exc:  # a broken plugin must not break the other commands
            print(f"warning: plugin {name!r} could not be loaded: {exc}", file=sys.stderr)
    for _ in manager.call_each("anywhere_cli", subparsers=parser.commands):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    if first not in CORE_COMMANDS or "-h" in argv[:1] or "--help" in argv[:1]:
        add_plugin_commands(parser, first)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:  # a plugin's command group without its action
        parser.parse_args([*argv, "--help"])
    try:
        return args.func(args)
    except (AnywhereError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
