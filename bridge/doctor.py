"""``anywhere doctor``: one line per check, and what to do when it fails."""

from __future__ import annotations

import asyncio
import inspect
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml
from aiohttp import web

from .api import DoctorCheck
from .config import Config, load_config
from .errors import AnywhereError
from .registration import build_registration
from .web import check_homeserver_token

if TYPE_CHECKING:
    from .pluginmanager import PluginManager

OK, FAIL, WARN = "ok  ", "FAIL", "warn"
# the longest one plugin's checks may take
PLUGIN_CHECK_SECONDS = 20.0


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, name: str, text: str, fix: str = "") -> None:
        if status == FAIL:
            self.failed = True
        print(f"[{status}] {name}: {text}" + (f" — {fix}" if fix else ""), flush=True)


async def run_doctor(config_path: Path, registration_path: Path) -> int:
    from .runtime import load_plugins, plugin_namespaces

    report = Report()
    try:
        config = load_config(config_path)
        manager = load_plugins(config)
    except AnywhereError as exc:
        report.line(
            FAIL,
            "config",
            str(exc),
            f"fix {config_path} (or the ANYWHERE__ variable named) and run doctor again",
        )
        return 1
    report.line(OK, "config", f"{config_path} is valid; plugins: {', '.join(manager.names())}")

    try:
        expected = build_registration(config, plugin_namespaces(config, manager))
        report.line(OK, "namespaces", "the plugins' namespaces do not overlap")
    except AnywhereError as exc:
        report.line(FAIL, "namespaces", str(exc))
        return 1
    check_registration_file(report, registration_path, expected)
    check_private_files(report, config, registration_path)
    from .crypto.doctor import check_encryption

    check_encryption(report, config, registration_path)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        if await check_homeserver(report, http, config) and await check_as_token(
            report, http, config
        ):
            await check_ping(report, http, config)
    await check_plugins(report, config, manager)
    return 1 if report.failed else 0


async def check_plugins(report: Report, config: Config, manager: PluginManager) -> None:
    """Each plugin's own checks (``anywhere_doctor``), with a bridge that is not started:
    its config and settings only."""
    from .runtime import Bridge

    bridge = Bridge(config, manager)
    statuses = {"ok": OK, "warn": WARN, "fail": FAIL}
    for name, func in manager.impls("anywhere_doctor"):
        try:
            result = func(bridge=bridge)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, PLUGIN_CHECK_SECONDS)
            checks = list(result or [])
        except TimeoutError:
            report.line(FAIL, name, f"its checks took longer than {PLUGIN_CHECK_SECONDS:.0f} s")
            continue
        except Exception as exc:
            report.line(FAIL, name, f"its checks failed: {type(exc).__name__}: {exc}")
            continue
        for check in checks:
            if not isinstance(check, DoctorCheck) or check.status not in statuses:
                report.line(FAIL, name, f"returned {check!r}, not a DoctorCheck")
                continue
            report.line(statuses[check.status], check.name, check.text, check.fix)


def check_private_files(report: Report, config: Config, registration_path: Path) -> None:
    """Tokens and data that other local users can read: files left by an older version
    (which wrote them 0644) or changed by hand. The registration may be shared with a
    group (Synapse running as another user), never with everyone."""
    found = []
    checks = [(config.path, 0o077, "600"), (registration_path, 0o007, "600")]
    checks.append((config.data_dir, 0o077, "700"))
    for path, loose, mode in checks:
        if path is not None and path.exists() and path.stat().st_mode & loose:
            found.append((path, oct(path.stat().st_mode & 0o777)[2:], mode))
    if not found:
        report.line(OK, "permissions", "the config, the registration and the data are private")
        return
    for path, now, mode in found:
        report.line(
            WARN,
            "permissions",
            f"{path} is readable by other users (mode {now})",
            f"chmod {mode} {path}",
        )


def check_registration_file(report: Report, path: Path, expected: dict[str, Any]) -> None:
    fix = f"run `anywhere registration -r {path}` and restart the homeserver"
    if not path.exists():
        report.line(WARN, "registration", f"{path} not found (cannot compare it)", fix)
        return
    try:
        found = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        report.line(FAIL, "registration", f"{path} is not valid YAML: {exc}", fix)
        return
    differs = [k for k in expected if not isinstance(found, dict) or found.get(k) != expected[k]]
    if differs:
        report.line(
            FAIL, "registration", f"{path} differs from the config in: {', '.join(differs)}", fix
        )
    else:
        report.line(OK, "registration", f"{path} matches the config")


async def check_homeserver(report: Report, http: aiohttp.ClientSession, config: Config) -> bool:
    url = config["homeserver.url"]
    try:
        async with http.get(f"{url}/_matrix/client/versions") as resp:
            ok = resp.status == 200
            versions = (await resp.json(content_type=None)).get("versions", []) if ok else []
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        report.line(
            FAIL,
            "homeserver",
            f"{url} does not answer ({type(exc).__name__}: {exc})",
            "check homeserver.url and that the homeserver is running",
        )
        return False
    if not ok:
        report.line(
            FAIL,
            "homeserver",
            f"{url} answered HTTP {resp.status}",
            "homeserver.url must be the client-server API base URL",
        )
        return False
    report.line(OK, "homeserver", f"{url} answers (spec versions up to {versions[-1:]})")
    return True


async def check_as_token(report: Report, http: aiohttp.ClientSession, config: Config) -> bool:
    url = f"{config['homeserver.url']}/_matrix/client/v3/account/whoami"
    headers = {"Authorization": f"Bearer {config['appservice.as_token']}"}
    async with http.get(url, headers=headers) as resp:
        body = await resp.json(content_type=None)
    if resp.status != 200:
        report.line(
            FAIL,
            "as_token",
            f"the homeserver refused it ({body.get('errcode')}: {body.get('error')})",
            "add registration.yaml to app_service_config_files and restart the homeserver",
        )
        return False
    if body.get("user_id") != config.bot_mxid:
        report.line(
            FAIL,
            "as_token",
            f"it belongs to {body.get('user_id')}, expected {config.bot_mxid}",
            "check appservice.bot.localpart and homeserver.domain",
        )
        return False
    report.line(OK, "as_token", f"accepted; the bot is {config.bot_mxid}")
    return True


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        return sock.connect_ex((host, port)) == 0


async def check_ping(report: Report, http: aiohttp.ClientSession, config: Config) -> None:
    """Ask the homeserver to ping us (``/appservice/{id}/ping``): that proves both ways —
    the bridge reaches the homeserver and the homeserver reaches the bridge with the
    hs_token. If the bridge is not running, a temporary listener answers in its place."""
    host, port = config["appservice.hostname"], config["appservice.port"]
    runner = None
    who = "the running bridge"
    if not _port_in_use(host, port):
        who = "a temporary listener (the bridge is not running)"
        app = web.Application()

        async def ping(request: web.Request) -> web.Response:
            denied = check_homeserver_token(request, config["appservice.hs_token"])
            return denied or web.json_response({})

        app.router.add_post("/_matrix/app/v1/ping", ping)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
    try:
        url = (
            f"{config['homeserver.url']}/_matrix/client/v1/appservice/"
            f"{config['appservice.id']}/ping"
        )
        headers = {"Authorization": f"Bearer {config['appservice.as_token']}"}
        async with http.post(url, headers=headers, json={"transaction_id": "doctor"}) as resp:
            body = await resp.json(content_type=None)
        if resp.status == 200:
            report.line(
                OK,
                "ping",
                f"the homeserver reached {who} at "
                f"{config['appservice.address']} in {body.get('duration_ms')} ms",
            )
        else:
            report.line(
                FAIL,
                "ping",
                f"{body.get('errcode')}: {body.get('error')} (HTTP {resp.status})",
                "check that appservice.address is reachable "
                "from the homeserver and that hs_token matches registration.yaml",
            )
    finally:
        if runner is not None:
            await runner.cleanup()
