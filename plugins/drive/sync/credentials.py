"""The sync client's login: a Matrix password login (matrix-nio), kept in the user's
config folder (``$XDG_CONFIG_HOME/anywhere/drive.json``, readable by the user only)."""

from __future__ import annotations

import json
import os
import tempfile
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
    """Write the login readable by the user only, from the moment the file exists: a new
    file made 0600 (``mkstemp``: never one left over, whatever its mode), then renamed
    over the old one."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(credentials), handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
    import aiohttp  # only for logging in: slow to import
    from nio import AsyncClient, AsyncClientConfig, LoginResponse

    # A few tries, not nio's default of retrying an unreachable homeserver forever.
    config = AsyncClientConfig(max_timeouts=3, max_timeout_retry_wait_time=2, request_timeout=30)
    client = AsyncClient(homeserver.rstrip("/"), user, config=config)
    try:
        response = await client.login(password, device_name=device_name)
    except aiohttp.ClientConnectorCertificateError as exc:
        raise LoginError(
            f"the homeserver at {homeserver} has a certificate that is not trusted "
            f"({exc.certificate_error}); nothing was sent. If your operator uses a private "
            "certificate authority, point SSL_CERT_FILE at its certificate"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise LoginError(
            f"cannot reach the homeserver at {homeserver} ({exc or type(exc).__name__}); "
            "check --homeserver"
        ) from exc
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
