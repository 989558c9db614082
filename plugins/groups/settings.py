"""The groups plugin's config section, ``plugins.settings.groups``."""

from __future__ import annotations

import re
from typing import Any

from anywhere.bridge.config import ConfigSection
from anywhere.bridge.errors import ConfigError

from . import limits
from .links import BadLink, prefix_place

NETWORK_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")

DEFAULTS: dict[str, Any] = {
    # The topic a new group room gets; {creator} is replaced by the creator's ID.
    "default_topic": "A group for a quick decision, opened by {creator}.",
    # The most people one `!group create` or `!group add` may invite at once.
    "max_invites": 50,
    # The largest message body relayed to another network, in characters; longer ones
    # are refused with a notice (the person keeps their message on Matrix).
    "max_body_chars": 20000,
    # The largest file carried between networks, in bytes.
    "max_file_bytes": 20 * 1024 * 1024,
    # Whether files linked from other networks may be fetched from addresses that are
    # not public (loopback, private networks, link-local): only for a test or an upload
    # service on your own network, as the bridge fetches what remote people send.
    "fetch_private_addresses": False,
    "xmpp": {
        "enabled": False,
        # The component's address as the XMPP server knows it (Prosody:
        # `Component "matrix.example.org"` with `component_secret`).
        "component_jid": "",
        "secret": "",
        # Where the XMPP server listens for components (Prosody: component_ports).
        "host": "127.0.0.1",
        "port": 5347,
        # The bridge's own occupant in each linked room: it receives the room's messages
        # once, for everybody on Matrix.
        "relay_nickname": "Matrix",
        # Reconnect backoff when the XMPP server goes away (seconds).
        "reconnect_max_delay": 10,
        # How many past messages to ask a room for when (re)joining it, to catch up with
        # what was said while the bridge or the server was away.
        "history_on_join": 50,
        # How many of a room's last messages appear in the Matrix room when it is linked
        # (from the room's archive, with their senders and times, marked as history;
        # 0: none).
        "history_on_link": 50,
        # The HTTP upload service (XEP-0363) files from Matrix are put on, e.g.
        # upload.example.org (Prosody: mod_http_file_share). Empty: files are refused with
        # a notice.
        "upload_jid": "",
        # Files XMPP people link to (XEP-0066) are fetched into Matrix only from URLs
        # under one of these (your upload service's, e.g.
        # https://upload.example.org:5281/file_share/): same scheme, host and port, and
        # a path below the prefix's folder; other links stay links. Never list internal
        # services: the bridge fetches what XMPP people send.
        "file_url_prefixes": [],
    },
    # What people of other networks can make the bridge create (see limits.py and
    # docs/networks.md): direct chats and ghosts per remote address and domain, and how
    # many new ones a minute.
    "limits": dict(limits.DEFAULTS),
    # Settings of connectors from other plugins: {network name: {their settings}}.
    "networks": None,
}


def validate(section: dict[str, Any], prefix: str) -> None:
    for key in ("max_invites", "max_body_chars", "max_file_bytes"):
        value = section[key]
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{prefix}.{key}", "a positive whole number", value)
    limits.validate(section["limits"], f"{prefix}.limits")
    xmpp = section["xmpp"]
    if xmpp["enabled"]:
        jid = xmpp["component_jid"]
        if not jid or "@" in jid or "/" in jid:
            raise ConfigError(
                f"{prefix}.xmpp.component_jid",
                "the component's domain, e.g. matrix.example.org",
                jid,
            )
        if not xmpp["secret"]:
            raise ConfigError(
                f"{prefix}.xmpp.secret", "the component_secret set in the XMPP server", ""
            )
        for key in ("history_on_join", "history_on_link"):
            if not isinstance(xmpp[key], int) or isinstance(xmpp[key], bool) or xmpp[key] < 0:
                raise ConfigError(f"{prefix}.xmpp.{key}", "a whole number, 0 or more", xmpp[key])
        if not 0 < xmpp["port"] < 65536:
            raise ConfigError(f"{prefix}.xmpp.port", "a TCP port", xmpp["port"])
        for n, url in enumerate(xmpp["file_url_prefixes"]):
            try:
                prefix_place(str(url))
            except BadLink as exc:
                raise ConfigError(
                    f"{prefix}.xmpp.file_url_prefixes[{n}]",
                    "an http(s) URL of your upload service, e.g. "
                    "https://upload.example.org:5281/file_share/",
                    url,
                    hint=str(exc),
                ) from exc
    if not isinstance(section["fetch_private_addresses"], bool):
        raise ConfigError(
            f"{prefix}.fetch_private_addresses", "true or false", section["fetch_private_addresses"]
        )
    networks = section["networks"]
    if networks is None:
        section["networks"] = {}
    elif not isinstance(networks, dict):
        raise ConfigError(f"{prefix}.networks", "a mapping of network name to settings", networks)
    for name in section["networks"]:
        if not NETWORK_NAME.fullmatch(str(name)) or name == "xmpp":
            raise ConfigError(
                f"{prefix}.networks.{name}",
                "a lowercase network name of letters and digits (not xmpp, which has its "
                "own section)",
                name,
            )


def enabled_networks(section: dict[str, Any]) -> list[str]:
    """Network names whose ghosts this bridge claims."""
    names = ["xmpp"] if section["xmpp"]["enabled"] else []
    return names + sorted(section.get("networks") or {})


SECTION = ConfigSection(DEFAULTS, validate)
