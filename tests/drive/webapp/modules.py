"""Where the browser tests' npm modules and Chromium are, and what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE.parents[2] / "plugins" / "drive" / "webapp"
MODULES = Path(
    os.environ.get("ANYWHERE_WEBAPP_MODULES", Path.home() / ".cache/anywhere-drive-webapp")
)
NODE_MODULES = MODULES / "node_modules"
ESBUILD = NODE_MODULES / ".bin" / "esbuild"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def missing(*modules: str) -> str | None:
    """Why the browser tests cannot run here, or None."""
    for tool in ("node", "chromium"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install nodejs chromium)"
    for module in modules:
        if not (NODE_MODULES / module).is_dir():
            return f"the npm module {module} is not installed: npm install --prefix {MODULES} " + (
                "(with tests/drive/webapp/package.json copied there; scripts/test.sh does it)"
            )
    return None


def node_env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(NODE_MODULES)}


def run_scenario(script: str, config: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run ``tests/drive/webapp/<script>`` with node; it prints one JSON line (its
    findings) last. Raises with the script's output when it fails."""
    done = subprocess.run(
        ["node", str(HERE / script), json.dumps({**config, "chromium": CHROMIUM})],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{script} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])
