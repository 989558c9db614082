"""``anywhere doctor`` checks the drive's storage: a probe stored, read back and removed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.e2e


def doctor(config_path, registration_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anywhere", "doctor", "-c", str(config_path)]
        + ["-r", str(registration_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_stores_a_probe_in_the_drive_storage_and_leaves_nothing(drive_stack):
    before = sorted(p for p in drive_stack.drive_root.rglob("*") if p.is_file())
    result = doctor(drive_stack.config_path, drive_stack.registration_path)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "drive storage:" in x)
    assert line.startswith("[ok  ] drive storage: osfs://"), line
    assert "a probe was stored, read back and removed" in line and "GB free" in line
    assert sorted(p for p in drive_stack.drive_root.rglob("*") if p.is_file()) == before


def test_doctor_says_when_the_drive_storage_cannot_be_used(drive_stack, tmp_path):
    config = yaml.safe_load(drive_stack.config_path.read_text())
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    config["plugins"]["settings"]["drive"]["storage_url"] = f"osfs://{in_the_way}"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = doctor(tmp_path / "config.yaml", drive_stack.registration_path)
    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if "drive storage:" in x)
    assert line.startswith(f"[FAIL] drive storage: cannot open osfs://{in_the_way}"), line
    assert "storage_url to a place the bridge's user can write" in line
    assert "[ok  ] homeserver:" in result.stdout  # the other checks still ran
