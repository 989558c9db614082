"""The web app's committed build (``plugins/drive/webapp/static/``, shipped in the wheel
so that ``pip install`` needs no node) is what its source builds to: rebuilt here with
the pinned esbuild and compared byte for byte."""

from __future__ import annotations

import json
import subprocess

from anywhere.bridge.testing.fixtures import skip_unless_ci

from .webapp.modules import APP, ESBUILD, NODE_MODULES, missing, node_env


def test_the_committed_build_matches_the_source(tmp_path):
    if (reason := missing("esbuild", "matrix-widget-api")) is not None:
        skip_unless_ci(reason)
    pinned = json.loads((APP / "package.json").read_text())["devDependencies"]
    for module, version in pinned.items():
        installed = json.loads((NODE_MODULES / module / "package.json").read_text())["version"]
        assert installed == version, f"{module} {installed} is installed, the build pins {version}"
    built = subprocess.run(
        [str(APP / "build.sh"), str(tmp_path)],
        env={**node_env(), "ESBUILD": str(ESBUILD)},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    committed = sorted(p.name for p in (APP / "static").iterdir())
    assert committed == sorted(p.name for p in tmp_path.iterdir())
    stale = [
        name
        for name in committed
        if (tmp_path / name).read_bytes() != (APP / "static" / name).read_bytes()
    ]
    assert not stale, (
        f"plugins/drive/webapp/static/{stale} differ from what src/ builds to: run "
        "`npm install && npm run build` in plugins/drive/webapp and commit static/"
    )
