"""bench/bench_dispatch_compare.py measures the baseline's own code, not this tree's under
the old names (the legacy-names finder, the installed entry points)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_dispatch_compare import DEFAULT_BASELINE, BaselineTree, git  # noqa: E402


@pytest.fixture
def baseline(tmp_path: Path) -> BaselineTree:
    try:
        git("rev-parse", "--verify", f"{DEFAULT_BASELINE}^{{commit}}")
    except subprocess.CalledProcessError:
        pytest.skip(f"{DEFAULT_BASELINE} is not in this clone (shallow?)")
    tree = BaselineTree(DEFAULT_BASELINE, tmp_path)
    tree.unpack()
    return tree


def test_the_baseline_runs_its_own_bridge_and_plugins(baseline: BaselineTree) -> None:
    assert baseline.check_imports(["basics", "policy"]).split(", ") == [
        "bridge/runtime.py",
        "plugins/basics/__init__.py",
        "plugins/policy/__init__.py",
    ]


def test_without_its_entry_points_the_check_refuses(baseline: BaselineTree) -> None:
    """The installed entry points name anywhere.plugins.basics: this tree's code."""
    for info in baseline.path.glob("*.dist-info"):
        shutil.rmtree(info)
    with pytest.raises(RuntimeError, match="would run this tree's code"):
        baseline.check_imports(["basics"])
