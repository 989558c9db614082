"""Shared set-up of the drive benchmarks: a real Synapse and the bridge with the drive,
in a temporary folder, and one logged-in person."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from anywhere.bridge.testing.stack import Stack

PREFIX = "/_anywhere/drive/v1"


def drive_stack(workdir: Path, *, synapse_upload_limit: str = "100M") -> Stack:
    return Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={"drive": {"storage_url": f"osfs://{workdir / 'drive-store'}"}},
        bridge_extra={"logging": {"level": "WARNING"}},
        synapse_extra={"max_upload_size": synapse_upload_limit},
    )


def temp_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


async def person(stack: Stack):
    return await stack.user()


def run(coro) -> None:
    asyncio.run(coro)
