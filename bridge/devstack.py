"""``anywhere dev``: a local Synapse, the bridge and demo people, in one folder.

Everything lives in ``--dir`` (default ``.anywhere-dev``): Synapse's config, database and
media, the bridge's config, registration and database, the demonstration policy rules
and the demo logins. Running it again reuses that state — also after the previous run
was killed, when its Synapse may still be running (it is restarted); delete the folder
to start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .config import PRIVATE_UMASK, load_config, write_private_file
from .errors import AnywhereError
from .logging import setup_logging

# Everything built in, so the demo shows the product; XMPP bridging needs a server of its
# own and stays off until configured (docs/networks.md).
DEV_PLUGINS = ["basics", "policy", "drive", "calls", "groups"]
SERVER_NAME = "localhost"
#: The demo people every dev stack has; the first is an admin of the bot.
DEMO_PEOPLE = ("demo", "demo2")
#: The demonstration policy rules (policy/examples/), copied into the bridge's folder.
DEMO_POLICY_FILES = {
    "policy-rules.yaml": "demo.rules.yaml",
    "subscribers.yaml": "demo.subscribers.yaml",
}


def _require_synapse() -> None:
    try:
        import synapse  # noqa: F401
    except ImportError as exc:
        raise AnywhereError(
            "`anywhere dev` runs a local Synapse, which is not installed here: "
            "pip install 'anywhere-bridge[dev]' (or matrix-synapse)"
        ) from exc


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def only_one_dev_stack(workdir: Path) -> Iterator[None]:
    """Hold ``dev.lock`` in the folder while running: a second ``anywhere dev`` on the same
    folder is told so, instead of fighting over its Synapse. The lock goes with the
    process, also when it is killed."""
    lock_path = workdir / "dev.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise AnywhereError(
                f"another `anywhere dev` is running with {workdir} (pid {holder}); stop it "
                "there with Ctrl-C, or pass --dir for a separate one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z`` for a zombie), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


def _command_line(pid: int) -> list[str]:
    """The arguments ``pid`` was started with (Linux: /proc; elsewhere: ps)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    try:
        ps = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return ps.stdout.split()


def stop_leftover_synapse(synapse_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop a Synapse that a killed ``anywhere dev`` left running on this folder's
    database (its pid file says which, its command line must name this folder's
    config); returns its pid, or None when there was none."""
    pid_path = synapse_dir / "homeserver.pid"
    try:
        pid = int(pid_path.read_text("ascii").strip())
    except (OSError, ValueError):
        return None
    config = str(synapse_dir / "homeserver.yaml")
    if _process_state(pid) in (None, "Z") or config not in _command_line(pid):
        return None  # gone, or the pid now belongs to something else: leave it alone
    say(f"A Synapse left running by the previous run (pid {pid}): restarting it ...")
    sig = signal.SIGTERM
    deadline = time.monotonic() + timeout
    while _process_state(pid) not in (None, "Z"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # it leads its own process group
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        pid_path.unlink()
    return pid


def _load_state(workdir: Path, people: list[str]) -> dict[str, Any]:
    from .devsynapse import free_port

    state_path = workdir / "dev-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state.setdefault("synapse_port", free_port())
    state.setdefault("bridge_port", free_port())
    passwords = state.setdefault("passwords", {})
    if "demo_password" in state:  # a folder from before there were several people
        passwords.setdefault("demo", state.pop("demo_password"))
    for name in (*DEMO_PEOPLE, *people):
        passwords.setdefault(name, secrets.token_urlsafe(12))
    write_private_file(state_path, json.dumps(state, indent=2))
    return state


def _copy_demo_policy_files(bridge_dir: Path) -> None:
    examples = resources.files("anywhere.policy").joinpath("examples")
    for name, example in DEMO_POLICY_FILES.items():
        if not (bridge_dir / name).exists():
            with resources.as_file(examples.joinpath(example)) as source:
                shutil.copyfile(source, bridge_dir / name)


#: What a dev stack's bridge config has besides `anywhere init`'s: the first demo person
#: is an admin of the bot; the demonstration rules are loaded.
DEV_ADMIN = f"@{DEMO_PEOPLE[0]}:{SERVER_NAME}"
DEV_POLICY_SETTINGS = {"rules_file": "policy-rules.yaml", "subscribers_file": "subscribers.yaml"}
#: Raised when the dev stack's own settings change, so older folders get them once.
DEV_CONFIG_VERSION = 3


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _write_bridge_folder(bridge_dir: Path, synapse_url: str, port: int) -> None:
    """The bridge's config and registration, and the rules files to edit."""

    bridge_dir.mkdir(parents=True, exist_ok=True)
    _copy_demo_policy_files(bridge_dir)
    write_bridge_files(
        bridge_dir,
        synapse_url=synapse_url,
        server_name=SERVER_NAME,
        enabled=DEV_PLUGINS,
        settings={"policy": {**DEV_POLICY_SETTINGS, "verification": {"salt": _new_secret()}}},
        port=port,
        extra={"bridge": {"permissions": {SERVER_NAME: "user", DEV_ADMIN: "admin"}}},
    )


def _update_bridge_folder(bridge_dir: Path) -> None:
    """Give a folder made by an older ``anywhere dev`` what a new one has, without
    undoing anything set since: the admin and the demonstration rules, where unset."""
    config_path = bridge_dir / "config.yaml"
    data = yaml.safe_load(config_path.read_text("utf-8")) or {}
    changed = []
    permissions = data.setdefault("bridge", {}).setdefault("permissions", {})
    if DEV_ADMIN not in permissions:
        permissions[DEV_ADMIN] = "admin"
        changed.append(f"{DEV_ADMIN} is an admin of the bot")
    plugins = data.setdefault("plugins", {})
    if "policy" in plugins.get("enabled", []):
        policy = plugins.setdefault("settings", {}).setdefault("policy", {})
        if not any(policy.get(key) for key in DEV_POLICY_SETTINGS):
            _copy_demo_policy_files(bridge_dir)
            policy.update(DEV_POLICY_SETTINGS)
            rules = bridge_dir / "policy-rules.yaml"
            changed.append(f"the demonstration rules in {rules} are loaded")
        verification = policy.setdefault("verification", {})
        if not verification.get("salt"):
            verification["salt"] = _new_secret()
            changed.append("phone numbers are hashed with a secret of their own")
    if changed:
        write_private_file(config_path, yaml.safe_dump(data, sort_keys=False))
        say(f"Updated {config_path}: " + "; ".join(changed) + ".")


async def run_dev(workdir: Path, people: list[str] | None = None) -> int:
    from .devsynapse import Synapse, SynapseError
    from .runtime import Bridge

    _require_synapse()
    os.umask(PRIVATE_UMASK)  # tokens, passwords and both databases: owner only
    workdir = workdir.resolve()
    first_start = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)  # also closes a folder made by an older version
    with only_one_dev_stack(workdir):
        state = _load_state(workdir, list(people or []))
        synapse_url = f"http://127.0.0.1:{state['synapse_port']}"
        config_path = workdir / "bridge" / "config.yaml"
        if not config_path.exists():
            say(f"Creating the dev stack in {workdir} ...")
            _write_bridge_folder(workdir / "bridge", synapse_url, state["bridge_port"])
        elif state.get("config_version", 1) < DEV_CONFIG_VERSION:
            _update_bridge_folder(workdir / "bridge")
        if state.get("config_version") != DEV_CONFIG_VERSION:
            state["config_version"] = DEV_CONFIG_VERSION
            write_private_file(workdir / "dev-state.json", json.dumps(state, indent=2))
        config = load_config(config_path)
        setup_logging(config["logging.format"], config["logging.level"])

        synapse_dir = workdir / "synapse"
        await asyncio.to_thread(stop_leftover_synapse, synapse_dir)
        synapse = Synapse(
            synapse_dir,
            server_name=SERVER_NAME,
            port=state["synapse_port"],
            app_service_config_files=[workdir / "bridge" / "registration.yaml"],
        )
        say(
            f"Starting Synapse on {synapse_url} (state in {synapse_dir})"
            + (" — the first start creates its database ..." if first_start else " ...")
        )
        try:
            await asyncio.to_thread(synapse.start)
        except SynapseError as exc:
            raise AnywhereError(f"Synapse did not start: {exc}") from exc
        try:
            logins = []
            for name, password in state["passwords"].items():
                user = await asyncio.to_thread(synapse.register_user, name, password)
                logins.append((user["user_id"], password))
            say("Starting the bridge ...")
            bridge = Bridge(config)
            try:
                await bridge.start()
                await _serve_until_stopped(config, config_path, synapse_url, logins)
            finally:
                say("Stopping the bridge and Synapse ...")
                await bridge.stop()
        finally:
            await asyncio.to_thread(synapse.stop)
    say("Stopped.")
    return 0


async def _serve_until_stopped(
    config, config_path: Path, synapse_url: str, logins: list[tuple[str, str]]
) -> None:
    """Print where everything is, then wait for Ctrl-C or SIGTERM."""
    bot = yaml.safe_load(config_path.read_text())["appservice"]["bot"]["localpart"]
    demo, *others = logins
    lines = [f"  Demo login:  {demo[0]} / password {demo[1]} (an admin of the bot)"]
    lines += [f"  Also:        {user} / password {password}" for user, password in others]
    rules = config_path.parent / "policy-rules.yaml"
    say(
        "\nAnywhere is running.\n"
        f"  Homeserver:  {synapse_url}\n" + "\n".join(lines) + "\n"
        f"  Talk to:     @{bot}:{SERVER_NAME} (start a direct chat and send !help)\n"
        f"  Bridge:      {config['appservice.address']} (config {config_path})\n"
        f"  Policy:      demonstration rules in {rules}: send !policy explain call.place,\n"
        "               then !network 3g, !network wifi, !verify phone +82 10 1234 5678\n"
        "               (the code shows up here) and explain again\n"
        "Use any Matrix client (Element: set the homeserver to the URL above). "
        "Press Ctrl-C to stop.\n"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def write_bridge_files(
    workdir: Path,
    *,
    synapse_url: str,
    server_name: str,
    enabled: list[str],
    settings: dict[str, Any] | None = None,
    port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write config.yaml and registration.yaml for a bridge talking to ``synapse_url``."""
    from .config import deep_merge, render_config
    from .devsynapse import free_port
    from .registration import build_registration, write_registration
    from .runtime import load_plugins

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    reg_path = workdir / "registration.yaml"
    port = port or free_port()
    data = yaml.safe_load(render_config(server_name, synapse_url, port))
    data["plugins"] = {"enabled": enabled, "settings": settings or {}}
    data["data_dir"] = str(workdir / "data")
    data["logging"] = {"format": "console", "level": "INFO"}
    if extra:
        data = deep_merge(data, extra)
    write_private_file(config_path, yaml.safe_dump(data, sort_keys=False))  # it holds tokens
    config = load_config(config_path, environ={})
    manager = load_plugins(config)
    write_registration(reg_path, build_registration(config, manager.namespaces(config)))
    return config_path, reg_path
