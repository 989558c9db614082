"""``python -m anywhere.plugins.drive.sync login|sync ...``: the sync client on its own, the same
commands as ``anywhere drive login|sync`` without loading the bridge and its plugins
(a faster start, for scripts and schedulers)."""

from __future__ import annotations

import argparse
import sys

from .cli import add_parsers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anywhere.plugins.drive.sync")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parsers(sub)
    drive = sub.choices["drive"]
    args = drive.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
