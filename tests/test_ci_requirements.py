"""Under ``CI=true`` a missing requirement (PostgreSQL, Chromium, root, matrix-js-sdk)
fails the run instead of skipping tests silently; elsewhere it skips, saying what is
missing. Each case runs pytest in a child process with the requirement taken away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/postgres"

DATABASE_TEST = """
async def test_on_each_database(anywhere_database_url):
    assert anywhere_database_url
"""


def run_pytest(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "CI"} | env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def database_test(tmp_path) -> Path:
    (tmp_path / "test_db.py").write_text(DATABASE_TEST, "utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
        "utf-8",
    )
    return tmp_path


def test_without_postgresql_the_shipped_database_fixture_skips_saying_why(database_test):
    run = run_pytest(["test_db.py"], database_test, ANYWHERE_TEST_PG=UNREACHABLE_PG)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert "no PostgreSQL reachable at " + UNREACHABLE_PG in run.stdout


def test_under_ci_a_missing_postgresql_fails_the_run(database_test):
    run = run_pytest(["test_db.py"], database_test, ANYWHERE_TEST_PG=UNREACHABLE_PG, CI="true")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout or "1 passed, 1 error" in run.stdout
    assert "no PostgreSQL reachable" in run.stdout
    assert "required: CI=true is set" in run.stdout


@pytest.mark.parametrize("ci", ["", "true"])
def test_under_ci_a_missing_matrix_js_sdk_fails_the_browser_test(tmp_path, ci):
    run = run_pytest(
        ["tests/calls/test_calls_browser.py"],
        ROOT,
        ANYWHERE_BROWSER_MODULES=str(tmp_path / "no-modules-here"),
        CI=ci,
    )
    if ci:
        assert run.returncode == 1, run.stdout + run.stderr
        assert "required: CI=true is set" in run.stdout
    else:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "1 skipped" in run.stdout
