"""A real browser client: matrix-js-sdk (Element's call code, from npm, bundled with
esbuild) in headless Chromium calls the echo bot through a real Synapse.

Everything runs in a loopback-only network namespace (``unshare -n``), so only
127.0.0.1 candidates exist. Needs root, Debian's ``chromium`` and the npm packages of
``tests/calls/browser/package.json`` installed with
``npm install --prefix ~/.cache/anywhere-calls-browser`` (or in
``$ANYWHERE_BROWSER_MODULES``); skipped, saying which is missing, otherwise (failed
under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anywhere.bridge.testing.fixtures import skip_unless_ci

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
MODULES = Path(
    os.environ.get("ANYWHERE_BROWSER_MODULES", Path.home() / ".cache/anywhere-calls-browser")
)


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a loopback-only network namespace (unshare -n)"
    for tool in ("chromium", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install chromium util-linux iproute2)"
    if not (MODULES / "node_modules" / "matrix-js-sdk").is_dir():
        return f"matrix-js-sdk is not installed: npm install --prefix {MODULES} " + str(
            HERE / "browser"
        )
    return None


def test_element_s_call_code_in_chromium_calls_the_echo_bot_and_hears_its_tone(tmp_path):
    if (reason := missing()) is not None:
        skip_unless_ci(reason)  # under CI=true a missing requirement fails the run
    bundle = tmp_path / "bundle.js"
    built = subprocess.run(
        [
            str(MODULES / "node_modules" / ".bin" / "esbuild"),
            str(HERE / "browser" / "page.js"),
            "--bundle",
            "--format=esm",
            f"--outfile={bundle}",
            "--log-level=warning",
        ],
        env={**os.environ, "NODE_PATH": str(MODULES / "node_modules")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    workdir = tmp_path / "world"
    workdir.mkdir()
    runner = HERE / "browser" / "run_browser_call.py"
    done = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            f'ip link set lo up && exec "{sys.executable}" "{runner}" "{bundle}" "{workdir}"',
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    outcome = json.loads(lines[-1])
    page = outcome["page"]
    assert "error" not in page, outcome
    assert page["connected"], outcome["page_log"]
    assert page["pair"] == ["127.0.0.1", "127.0.0.1"]
    assert page["packetsSent"] > 100 and page["packetsReceived"] > 100
    assert page["totalAudioEnergy"] > 0, "the page heard nothing"
    # the bot heard the page's 440 Hz tone: its echo peaks there (6 Hz FFT bins), in most
    # of the page's twelve looks at the spectrum
    near = [hz for hz in page["peaksHz"] if abs(hz - 440) < 15]
    assert len(near) > len(page["peaksHz"]) / 2, page["peaksHz"]
    assert outcome["bridge_answered"]
    [report] = outcome["quality_reports"]
    assert "packet loss" in report
