"""``anywhere`` — the command line: init, run, dev, doctor."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
from pathlib import Path

from .config import PLACEHOLDER, PRIVATE_UMASK, example_text, load_config, write_private_file
from .errors import AnywhereError, StorageError


def _private_files() -> None:
    """Everything this process creates from now on (config, registration, the database,
    the drive's content, a dev Synapse's state) is readable by its owner only."""
    os.umask(PRIVATE_UMASK)


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def render_config(domain: str, homeserver_url: str, port: int | None = None) -> str:
    """The example config with fresh tokens and the given homeserver filled in."""
    text = example_text()
    while PLACEHOLDER in text:
        text = text.replace(PLACEHOLDER, _new_token(), 1)
    text = re.sub(r"(?m)^(  url: )http://127\.0\.0\.1:8008$", rf"\g<1>{homeserver_url}", text)
    text = re.sub(r"(?m)^(  domain: )example\.org$", rf"\g<1>{domain}", text)
    text = re.sub(r'(?m)^(    )"example\.org": user$', rf'\g<1>"{domain}": user', text)
    if port is not None:
        text = text.replace("127.0.0.1:29340", f"127.0.0.1:{port}")
        text = re.sub(r"(?m)^(  port: )29340$", rf"\g<1>{port}", text)
    return text


def cmd_init(args: argparse.Namespace) -> int:
    from .registration import build_registration, write_registration
    from .runtime import load_plugins, plugin_namespaces

    config_path, reg_path = Path(args.config), Path(args.registration)
    for path in (config_path, reg_path):
        if path.exists():
            print(
                f"error: {path} exists already; refusing to overwrite it. Move it away or "
                "pass another path (-c / -r).",
                file=sys.stderr,
            )
            return 1
    _private_files()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(config_path, render_config(args.domain, args.homeserver), exclusive=True)
    config = load_config(config_path)
    manager = load_plugins(config)
    write_registration(reg_path, build_registration(config, plugin_namespaces(config, manager)))
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
    write_registration(
        Path(args.registration), build_registration(config, plugin_namespaces(config, manager))
    )
    print(f"Wrote {args.registration}; restart the homeserver to load it.")
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

    return asyncio.run(run_doctor(Path(args.config), Path(args.registration)))


def cmd_dev(args: argparse.Namespace) -> int:
    from .devstack import run_dev

    _private_files()
    return asyncio.run(run_dev(Path(args.dir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anywhere",
        description="Anywhere: smart-work tools for Matrix clients, as an application service.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write config.yaml (fresh tokens) and registration.yaml")
    p.add_argument("-c", "--config", default="config.yaml")
    p.add_argument("-r", "--registration", default="registration.yaml")
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
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("registration", help="(re)write registration.yaml from config.yaml")
    p.add_argument("-c", "--config", default="config.yaml")
    p.add_argument("-r", "--registration", default="registration.yaml")
    p.set_defaults(func=cmd_registration)

    p = sub.add_parser("run", help="run the bridge")
    p.add_argument("-c", "--config", default="config.yaml")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "doctor",
        help="check the config, the registration, the homeserver and what each plugin needs",
    )
    p.add_argument("-c", "--config", default="config.yaml")
    p.add_argument("-r", "--registration", default="registration.yaml")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("dev", help="run a local Synapse, the bridge and a demo user")
    p.add_argument("--dir", default=".anywhere-dev", help="folder for all the local state")
    p.set_defaults(func=cmd_dev)

    return parser


CORE_COMMANDS = {"init", "registration", "run", "doctor", "dev"}


def add_plugin_commands(parser: argparse.ArgumentParser, command: str | None) -> None:
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
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for _ in manager.call_each("anywhere_cli", subparsers=subparsers):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    if first not in CORE_COMMANDS or "-h" in argv[:1] or "--help" in argv[:1]:
        add_plugin_commands(parser, first)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (AnywhereError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
