"""``anywhere dev``: a local Synapse, the bridge and a demo user, in one folder.

Everything lives in ``--dir`` (default ``.anywhere-dev``): Synapse's config, database and
media, the bridge's config, registration and database, and the demo login. Running it
again reuses that state; delete the folder to start over.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from pathlib import Path

import yaml

from .config import PRIVATE_UMASK, load_config, write_private_file
from .errors import AnywhereError
from .logging import setup_logging

# Everything built in, so the demo shows the product; XMPP bridging needs a server of its
# own and stays off until configured (docs/networks.md).
DEV_PLUGINS = ["basics", "policy", "drive", "calls", "groups"]


def _require_synapse() -> None:
    try:
        import synapse  # noqa: F401
    except ImportError as exc:
        raise AnywhereError(
            "`anywhere dev` runs a local Synapse, which is not installed here: "
            "pip install 'anywhere-bridge[dev]' (or matrix-synapse)"
        ) from exc


async def run_dev(workdir: Path) -> int:
    from .runtime import Bridge
    from .testing.stack import write_bridge_files
    from .testing.synapse import Synapse, free_port

    _require_synapse()
    os.umask(PRIVATE_UMASK)  # tokens, passwords and both databases: owner only
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)  # also closes a folder made by an older version
    state_path = workdir / "dev-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state.setdefault("synapse_port", free_port())
    state.setdefault("bridge_port", free_port())
    state.setdefault("demo_password", secrets.token_urlsafe(12))
    write_private_file(state_path, json.dumps(state, indent=2))

    server_name = "localhost"
    synapse_url = f"http://127.0.0.1:{state['synapse_port']}"
    config_path = workdir / "bridge" / "config.yaml"
    if not config_path.exists():
        write_bridge_files(
            workdir / "bridge",
            synapse_url=synapse_url,
            server_name=server_name,
            enabled=DEV_PLUGINS,
            port=state["bridge_port"],
        )
    registration = workdir / "bridge" / "registration.yaml"
    config = load_config(config_path)
    setup_logging(config["logging.format"], config["logging.level"])

    synapse = Synapse(
        workdir / "synapse",
        server_name=server_name,
        port=state["synapse_port"],
        app_service_config_files=[registration],
    )
    print(f"Starting Synapse on {synapse_url} (state in {workdir / 'synapse'}) ...", flush=True)
    await asyncio.to_thread(synapse.start)
    try:
        demo = await asyncio.to_thread(synapse.register_user, "demo", state["demo_password"])
        bridge = Bridge(config)
        try:
            await bridge.start()
            await _serve_until_stopped(
                config, config_path, synapse_url, server_name, demo, state["demo_password"]
            )
        finally:
            print("Stopping the bridge and Synapse ...", flush=True)
            await bridge.stop()
    finally:
        await asyncio.to_thread(synapse.stop)
    print("Stopped.")
    return 0


async def _serve_until_stopped(
    config, config_path, synapse_url, server_name, demo, password
) -> None:
    """Print where everything is, then wait for Ctrl-C or SIGTERM."""
    bot = yaml.safe_load(config_path.read_text())["appservice"]["bot"]["localpart"]
    print(
        "\nAnywhere is running.\n"
        f"  Homeserver:  {synapse_url}\n"
        f"  Demo login:  {demo['user_id']} / password {password}\n"
        f"  Talk to:     @{bot}:{server_name} (start a direct chat and send !help)\n"
        f"  Bridge:      {config['appservice.address']} (config {config_path})\n"
        "Use any Matrix client (Element: set the homeserver to the URL above). "
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
