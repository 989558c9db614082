"""The litmus WebDAV test suite (Debian's ``litmus``) against ``/dav/`` on a real Synapse
and bridge: its basic, copymove, props, locks and http groups pass."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from .webdav_client import Dav, need_tool

pytestmark = pytest.mark.e2e

#: Each group and how many tests litmus 0.13 runs in it (none may go missing).
GROUPS = {"basic": 16, "copymove": 13, "props": 30, "locks": 40, "http": 4}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("group", GROUPS)
async def test_litmus_group_passes_against_dav(request, person, group, database, tmp_path):
    """On both databases: locks and properties are rows in the bridge's database."""
    litmus = need_tool("litmus")
    drive_stack = request.getfixturevalue(
        "drive_stack" if database == "sqlite" else "pg_drive_stack"
    )
    dav = await Dav.of(drive_stack, await person(drive_stack))
    url = await dav.folder(f"Litmus-{group}")
    proc = await asyncio.create_subprocess_exec(
        litmus,
        url,
        dav.login,
        dav.password,
        cwd=tmp_path,
        env={**os.environ, "TESTS": group},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode("utf-8", "replace")
    print(out)  # shown with -s, and on failure
    counts = rf"summary for `{group}': of (\d+) tests run: (\d+) passed, (\d+) failed"
    summary = re.search(counts, out)
    assert summary, out
    assert proc.returncode == 0 and summary.group(3) == "0", out
    assert int(summary.group(1)) >= GROUPS[group], out
