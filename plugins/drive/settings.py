"""The drive's config section, ``plugins.settings.drive``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from anywhere.bridge.config import ConfigSection
from anywhere.bridge.errors import ConfigError

MEDIA_KINDS = ("audio", "video", "image", "document", "archive", "other")
DEFAULTS: dict[str, Any] = {
    # Where file content is kept: s3://bucket/prefix?endpoint=https://... (S3-compatible
    # storage, see docs/drive.md) or a PyFilesystem2 URL. Empty: osfs://<data_dir>/drive.
    "storage_url": "",
    # Per-person quota in bytes (50 GB, as in the seed); versions and trash count.
    "quota_bytes": 50 * 1024**3,
    # Days a file stays in the trash before it is deleted for good (its quota freed);
    # 0 keeps the trash until its folder's owner empties it (!drive empty).
    "trash_days": 30,
    # Media kinds that may not be shared out of the drive (copyright). [] allows all.
    "share_blocked_kinds": ["audio", "video"],
    # The address people reach the bridge's web server at, for links to large files.
    # Empty: http://<appservice.hostname>:<appservice.port>.
    "public_url": "",
    # Origins that may show the web app in a frame (the Element web clients the widget
    # runs in), e.g. ["https://app.element.io"]; the bridge's own origin always may.
    "webapp_frame_ancestors": [],
    # How long a drive session of the web app as a widget lasts (it renews itself with a
    # new OpenID token before it ends).
    "webapp_session_seconds": 900,
}


#: An origin as the Content-Security-Policy's frame-ancestors takes it, nothing more (a value
#: with spaces or ";" would add directives of its own to the page's policy).
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class DriveSettings:
    storage_url: str = "mem://"
    quota_bytes: int = DEFAULTS["quota_bytes"]
    trash_days: int = DEFAULTS["trash_days"]
    share_blocked_kinds: list[str] = field(default_factory=lambda: ["audio", "video"])
    public_url: str = ""


def validate(section: dict[str, Any], prefix: str) -> None:
    url = section["storage_url"]
    if not isinstance(url, str) or (url and "://" not in url):
        raise ConfigError(
            f"{prefix}.storage_url",
            "a storage URL such as osfs:///srv/drive, s3://bucket/drive?endpoint=https://... "
            "or mem://",
            url,
        )
    quota = section["quota_bytes"]
    if not isinstance(quota, int) or isinstance(quota, bool) or quota <= 0:
        raise ConfigError(f"{prefix}.quota_bytes", "a positive number of bytes", quota)
    days = section["trash_days"]
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise ConfigError(
            f"{prefix}.trash_days", "a number of days (0: never empty the trash by itself)", days
        )
    kinds = section["share_blocked_kinds"]
    if not isinstance(kinds, list) or any(k not in MEDIA_KINDS for k in kinds):
        raise ConfigError(
            f"{prefix}.share_blocked_kinds", f"a list of media kinds from {MEDIA_KINDS}", kinds
        )
    public = section["public_url"]
    if not isinstance(public, str) or (public and not public.startswith(("http://", "https://"))):
        raise ConfigError(f"{prefix}.public_url", "an http:// or https:// URL", public)
    ancestors = section["webapp_frame_ancestors"]
    if not isinstance(ancestors, list) or not all(
        isinstance(a, str) and _ORIGIN.fullmatch(a) for a in ancestors
    ):
        raise ConfigError(
            f"{prefix}.webapp_frame_ancestors",
            "a list of origins such as https://app.element.io (scheme and host, no path)",
            ancestors,
        )
    lifetime = section["webapp_session_seconds"]
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 5:
        raise ConfigError(
            f"{prefix}.webapp_session_seconds", "a number of seconds, at least 5", lifetime
        )


CONFIG_SECTION = ConfigSection(defaults=DEFAULTS, validate=validate)
