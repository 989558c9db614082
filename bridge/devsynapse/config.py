"""What a local Synapse's ``homeserver.yaml`` and logging config hold: the files in its
workdir, their paths, the secrets kept across rewrites and the listener's port. The
:class:`anywhere.bridge.devsynapse.Synapse` running the process holds one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from anywhere.bridge.config import deep_merge

from .ports import free_port, port_is_free

#: Secrets that survive a rewrite of an existing ``homeserver.yaml``.
_PERSISTENT_SECRETS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")

#: A rate limit nobody hits in a test.
_NO_LIMIT = {"per_second": 10_000, "burst_count": 100_000}

#: Every client-facing rate limiter Synapse 1.163 reads (``synapse/config/ratelimiting.py``).
#: Dotted keys are nested sections, e.g. ``rc_login: {address: {...}}``.
_RATE_LIMIT_KEYS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)


#: What Synapse needs for an appservice in encrypted rooms (names as in Synapse 1.163's
#: ``synapse/config/experimental.py``).
ENCRYPTION_EXPERIMENTAL_FEATURES = {
    "msc3202_transaction_extensions": True,
    "msc2409_to_device_messages_enabled": True,
}


class SynapseError(RuntimeError):
    """Synapse could not be configured, started or talked to.

    The message is meant for a human: it says what went wrong, what to try and,
    when Synapse itself failed, quotes the end of ``synapse.log``.
    """


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = dict(value)


class SynapseConfig:
    """The config files of one Synapse living in ``workdir`` (see
    :class:`~anywhere.bridge.devsynapse.Synapse` for the arguments).

    Reading an existing ``homeserver.yaml`` on construction keeps its secrets and, when
    ``port`` is None and it is still free, its port; :meth:`write_config` rewrites
    everything else from the arguments.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str = "localhost",
        host: str = "127.0.0.1",
        port: int | None = None,
        app_service_config_files: Iterable[Path] = (),
        extra_config: dict[str, Any] | None = None,
        log_level: str = "WARNING",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.server_name = server_name
        self.host = host
        self.app_service_config_files = [Path(p).resolve() for p in app_service_config_files]
        self.extra_config = dict(extra_config or {})
        self.log_level = log_level.upper()

        self.config_path = self.workdir / "homeserver.yaml"
        self.log_config_path = self.workdir / "log.config.yaml"
        self.log_path = self.workdir / "synapse.log"
        self.pid_path = self.workdir / "homeserver.pid"
        self.database_path = self.workdir / "homeserver.db"
        self.signing_key_path = self.workdir / "signing.key"
        self.media_store_path = self.workdir / "media"

        existing = self._read_existing_config()
        self._secrets = {
            name: existing.get(name) or secrets.token_urlsafe(32) for name in _PERSISTENT_SECRETS
        }
        self.registration_shared_secret: str = self._secrets["registration_shared_secret"]

        if port is None:
            port = self._existing_port(existing)
            if port is None or not port_is_free(host, port):
                port = free_port(host)
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _read_existing_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            return {}
        try:
            loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SynapseError(
                f"cannot read existing {self.config_path}: {exc}; "
                "delete it (the secrets in it will be regenerated) or fix it"
            ) from exc
        if not isinstance(loaded, dict):
            return {}
        old_name = loaded.get("server_name")
        if old_name and old_name != self.server_name and self.database_path.exists():
            raise SynapseError(
                f"{self.workdir} holds a homeserver for server_name {old_name!r}, "
                f"not {self.server_name!r}; Synapse cannot change the server name of "
                "an existing database. Use another workdir or delete this one."
            )
        return loaded

    @staticmethod
    def _existing_port(config: Mapping[str, Any]) -> int | None:
        for listener in config.get("listeners") or ():
            if isinstance(listener, dict) and listener.get("type") == "http":
                port = listener.get("port")
                if isinstance(port, int):
                    return port
        return None

    def build_config(self) -> dict[str, Any]:
        """Return the ``homeserver.yaml`` content as a dict (without writing it)."""
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.url + "/",
            "pid_file": str(self.pid_path),
            "report_stats": False,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [self.host],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    # "client" already serves the media repository and the
                    # /_synapse/admin API; Synapse skips a separate "media" entry.
                    # "openid": /_matrix/federation/v1/openid/userinfo, which the
                    # drive's web app checks widgets' OpenID tokens with.
                    "resources": [{"names": ["client", "openid"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.database_path)},
            },
            "log_config": str(self.log_config_path),
            "media_store_path": str(self.media_store_path),
            "max_upload_size": "100M",
            "signing_key_path": str(self.signing_key_path),
            # No network: never fetch keys from matrix.org, never federate.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "allow_public_rooms_over_federation": False,
            "url_preview_enabled": False,
            "enable_registration": False,
            "bcrypt_rounds": 4,
            "presence": {"enabled": True},
            "app_service_config_files": [str(p) for p in self.app_service_config_files],
            # Encrypted rooms: device lists and key counts (MSC3202) and to-device
            # events (MSC2409) in appservice transactions (docs/encryption.md).
            "experimental_features": dict(ENCRYPTION_EXPERIMENTAL_FEATURES),
            **self._secrets,
        }
        for key in _RATE_LIMIT_KEYS:
            _set_dotted(config, key, _NO_LIMIT)
        return deep_merge(config, self.extra_config)

    def build_log_config(self) -> dict[str, Any]:
        """Return the Python logging config Synapse gets (a ``dictConfig`` dict)."""
        return {
            "version": 1,
            "formatters": {
                "precise": {
                    # ``request`` is added to every record by Synapse's log factory.
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                    " - %(request)s - %(message)s"
                }
            },
            "handlers": {
                # Appends to the same file the child's stdout/stderr go to; both
                # use O_APPEND, so lines do not overwrite each other.
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "mode": "a",
                    "encoding": "utf8",
                }
            },
            "loggers": {
                # At DEBUG this logger prints access tokens; keep it quieter.
                "synapse.storage.SQL": {"level": "INFO"},
            },
            "root": {"level": self.log_level, "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def write_config(self) -> Path:
        """Write ``homeserver.yaml`` and the log config; return the config path.

        Idempotent: secrets already present in an existing ``homeserver.yaml``
        are kept (they were loaded by the constructor), so a restart reuses the
        database, users and access tokens.  The signing key is a separate file
        that Synapse generates on its first start and never overwrites.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_private(self.log_config_path, self.build_log_config())
        self._write_private(self.config_path, self.build_config())
        return self.config_path

    @staticmethod
    def _write_private(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Generated by anywhere.bridge.devsynapse; rewritten on every start.\n")
            yaml.safe_dump(data, fh, sort_keys=False)
        os.replace(tmp, path)
