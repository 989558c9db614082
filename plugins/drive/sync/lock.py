"""One sync at a time per local folder: a lock file with the owner's pid and host.

A lock left by a process that no longer runs on this host is stale and taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


class Locked(Exception):
    """Another sync of this folder is running."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SyncLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.took_over: dict | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == me["host"] and not _alive(holder["pid"]):
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "?"
                raise Locked(
                    f"another sync of this folder is running ({who}); wait for it, or remove "
                    f"{self.path} if you are sure it is not running"
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            return
        raise Locked(f"could not take the lock {self.path}")

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
