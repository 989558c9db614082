"""The sync client's login: a Matrix password login (matrix-nio), kept in the user's
config folder (``$XDG_CONFIG_HOME/anywhere/drive.json``, readable by the user only)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


class LoginError(Exception):
    """Logging in failed, or no login is stored; the message says what to do."""


@dataclass
class Credentials:
    homeserver: str
    bridge_url: str
    user_id: str
    access_token: str
    device_id: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "anywhere" / "drive.json"


def save(credentials: Credentials, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(credentials), handle, indent=2)
    os.replace(tmp, path)
    return path


def load(path: Path | None = None) -> Credentials:
    path = path or config_path()
    try:
        data = json.loads(path.read_text("utf-8"))
        return Credentials(**data)
    except FileNotFoundError as exc:
        raise LoginError(
            f"not logged in ({path} does not exist): run `anywhere drive login`"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise LoginError(f"{path} is damaged ({exc}): run `anywhere drive login` again") from exc


async def login(
    homeserver: str, user: str, password: str, bridge_url: str, device_name: str
) -> Credentials:
    from nio import AsyncClient, LoginResponse  # only for logging in: slow to import

    client = AsyncClient(homeserver.rstrip("/"), user)
    try:
        response = await client.login(password, device_name=device_name)
    finally:
        await client.close()
    if not isinstance(response, LoginResponse):
        raise LoginError(f"the homeserver refused the login for {user}: {response}")
    return Credentials(
        homeserver.rstrip("/"),
        bridge_url.rstrip("/"),
        response.user_id,
        response.access_token,
        response.device_id,
    )
