"""``anywhere drive login`` and ``anywhere drive sync`` (added through ``anywhere_cli``)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .credentials import LoginError, load, login, save
from .engine import NeedsForce, Sync
from .lock import Locked
from .remote import Remote, RemoteError, Unreachable

BAR_MIN_BYTES = 1 << 20


class ProgressBar:
    """A one-line progress bar on stderr for one transfer."""

    def __init__(self, name: str, total: int, stream=sys.stderr) -> None:
        self.name, self.total, self.done, self.stream = name, max(total, 1), 0, stream
        self._shown = -1

    def __call__(self, amount: int) -> None:
        self.done += amount
        percent = min(100, self.done * 100 // self.total)
        if percent != self._shown:
            self._shown = percent
            filled = percent * 30 // 100
            bar = "#" * filled + "." * (30 - filled)
            end = "\n" if percent == 100 else ""
            self.stream.write(f"\r[{bar}] {percent:3d}% {self.name}{end}")
            self.stream.flush()


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    drive = subparsers.add_parser(
        "drive", help="the drive's PC sync client; moving its storage (migrate-storage)"
    )
    sub = drive.add_subparsers(dest="drive_command", required=True, metavar="COMMAND")
    p = sub.add_parser("login", help="log in with your Matrix account; the token is kept")
    p.add_argument("--homeserver", required=True, help="your homeserver, e.g. https://example.org")
    p.add_argument("--user", required=True, help="your Matrix ID or user name")
    p.add_argument("--bridge", required=True, help="the bridge's web address (ask your operator)")
    p.add_argument(
        "--password-file",
        help="read the password from this file (default: ANYWHERE_DRIVE_PASSWORD, else asked "
        "on the terminal, else read from stdin)",
    )
    p.add_argument("--device-name", default=f"Anywhere drive sync on {socket.gethostname()}")
    p.set_defaults(func=cmd_login)
    s = sub.add_parser("sync", help="two-way sync of a local folder with a drive folder")
    s.add_argument("local_dir", type=Path, help="the local folder")
    s.add_argument("folder", help="the drive folder (its name or id)")
    s.add_argument("--watch", action="store_true", help="keep syncing; resume after outages")
    s.add_argument("--interval", type=float, default=5.0, help="seconds between runs (--watch)")
    s.add_argument("--force", action="store_true", help="allow a mass delete or an empty side")
    s.add_argument("--device", help="name used in conflicted copies (default: this host)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    s.set_defaults(func=cmd_sync)
    from ..migrate_storage import add_parser as add_migrate_storage

    add_migrate_storage(sub)


def plain_http_warning(url: str, what: str) -> str | None:
    """A warning when ``url`` is plain http:// to a host other than this computer: the
    password or token would cross the network readable, and anyone in the middle could
    answer in the server's place."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return None
    host = parts.hostname or ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost" or host.endswith(".localhost")
    if local:
        return None
    return (
        f"warning: {what} {url} is plain http:// to another computer: your "
        f"{'password' if what == '--homeserver' else 'token and files'} would cross the "
        "network unencrypted, and anyone in the middle could answer in its place; use "
        "https:// (ask your operator)"
    )


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file:
        return Path(args.password_file).read_text("utf-8").strip()
    if os.environ.get("ANYWHERE_DRIVE_PASSWORD"):
        return os.environ["ANYWHERE_DRIVE_PASSWORD"]
    if os.name != "posix" or _has_terminal():
        try:
            return getpass.getpass("Password: ")
        except EOFError:
            return None
    # No terminal (a scheduler, a container): a password piped in on stdin, if any.
    if sys.stdin is None or sys.stdin.closed:
        return None
    return sys.stdin.readline().rstrip("\r\n") or None


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def cmd_login(args: argparse.Namespace) -> int:
    for url, what in ((args.homeserver, "--homeserver"), (args.bridge, "--bridge")):
        if warning := plain_http_warning(url, what):
            print(warning, file=sys.stderr)
    try:
        password = _password(args)
    except OSError as exc:
        print(f"anywhere drive login: cannot read --password-file: {exc}", file=sys.stderr)
        return 1
    if password is None:
        print(
            "anywhere drive login: no password: there is no terminal to ask for it on, and "
            "none was piped in. Pass --password-file FILE (a file holding only the "
            "password), set ANYWHERE_DRIVE_PASSWORD, or pipe it on stdin",
            file=sys.stderr,
        )
        return 1
    try:
        credentials = asyncio.run(
            login(args.homeserver, args.user, password, args.bridge, args.device_name)
        )
    except (LoginError, OSError) as exc:
        print(f"anywhere drive login: {exc}", file=sys.stderr)
        return 1
    path = save(credentials)
    print(f"Logged in as {credentials.user_id}; the token is kept in {path}.")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    try:
        credentials = load()
    except LoginError as exc:
        print(f"anywhere drive sync: {exc}", file=sys.stderr)
        return 1
    show = sys.stderr.isatty() if args.progress is None else args.progress
    device = args.device or socket.gethostname().split(".")[0]

    def progress(name: str, size: int):
        return ProgressBar(name, size) if show and size >= BAR_MIN_BYTES else None

    async def once() -> int:
        remote = Remote(credentials)
        try:
            folder = await remote.folder_id(args.folder)
            sync = Sync(
                remote, folder, args.local_dir.resolve(), device=device, force=args.force,
                progress=progress,
            )  # fmt: skip
            report = await sync.run()
        finally:
            await remote.close()
        for line in report.notes:
            print(f"note: {line}")
        for line in report.skipped:
            print(f"skipped: {line}", file=sys.stderr)
        for line in report.errors:
            print(f"error: {line}", file=sys.stderr)
        print(report.summary())
        return 1 if report.errors or report.skipped else 0

    async def main() -> int:
        while True:
            try:
                code = await once()
            except Unreachable as exc:
                print(
                    f"offline: {exc}. Your local changes are kept and will be sent when the "
                    "connection returns.",
                    file=sys.stderr,
                )
                code = 2
            except (NeedsForce, Locked, RemoteError, FileNotFoundError) as exc:
                print(f"anywhere drive sync: {exc}", file=sys.stderr)
                return 3 if isinstance(exc, NeedsForce) else 1
            if not args.watch:
                return code
            await asyncio.sleep(args.interval)

    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly: the lock is released
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
