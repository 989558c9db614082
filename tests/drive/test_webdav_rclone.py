"""rclone's webdav backend (Debian's ``rclone``) copies a tree up to ``/dav/`` and down
again through a real bridge; ``rclone check --download`` finds no difference."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from .webdav_client import Dav, need_tool

pytestmark = pytest.mark.e2e


async def rclone(*args: str, config: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        need_tool("rclone"),
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode("utf-8", "replace")
    assert proc.returncode == 0, f"rclone {' '.join(args)} failed:\n{out}"
    return out


def make_tree(root: Path) -> None:
    files = {
        "readme.txt": b"hello from rclone\n",
        "empty.txt": b"",
        "docs/report 2024.pdf": os.urandom(300_000),
        "docs/nested/deeper/é unicode ☃.txt": b"snow",
        "data/big.bin": os.urandom(5 * 1024 * 1024 // 2),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


async def test_rclone_copies_a_tree_up_and_down_without_difference(drive_stack, person, tmp_path):
    need_tool("rclone")
    dav = await Dav.of(drive_stack, await person())
    url = await dav.folder("Tree")
    config = tmp_path / "rclone.conf"
    config.write_text("")
    obscured = (await rclone("obscure", dav.password, config=config)).strip()
    remote = f":webdav,url='{url}',vendor=other,user='{dav.login}',pass='{obscured}':"
    up, down = tmp_path / "up", tmp_path / "down"
    make_tree(up)
    await rclone("copy", str(up), remote, config=config)
    await rclone("check", "--download", str(up), remote, config=config)
    await rclone("copy", remote, str(down), config=config)
    await rclone("check", "--download", str(up), str(down), config=config)
    assert sorted(p.relative_to(down) for p in down.rglob("*")) == sorted(
        p.relative_to(up) for p in up.rglob("*")
    )
