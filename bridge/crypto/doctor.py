"""``anywhere doctor``'s encryption check: the key the bot's keys are pickled with, and
the registration settings encrypted rooms need — each missing one named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import Config

#: registration key -> what it gives (docs/encryption.md)
REGISTRATION_SETTINGS = {
    "io.element.msc4190": "the bot's own device (MSC4190)",
    "org.matrix.msc3202": "device lists and one-time-key counts in transactions (MSC3202)",
    "receive_ephemeral": "to-device events in transactions (MSC2409)",
}
HOMESERVER_SETTINGS = (
    "experimental_features: msc2409_to_device_messages_enabled and "
    "msc3202_transaction_extensions in homeserver.yaml"
)


def check_encryption(report: Any, config: Config, registration_path: Path) -> None:
    """One line: ok, or what is missing for encrypted rooms and what to do."""
    from ..doctor import FAIL, OK, WARN

    if not config["encryption.pickle_key"]:
        report.line(
            WARN,
            "encryption",
            "encryption.pickle_key is empty: the bot cannot read encrypted rooms and offers "
            "an unencrypted direct chat instead",
            "set it to a long random secret (`anywhere init` writes one) and back it up",
        )
        return
    try:
        registration = yaml.safe_load(registration_path.read_text("utf-8"))
    except (OSError, yaml.YAMLError):
        registration = None  # the registration check says why
    if not isinstance(registration, dict):
        return
    missing = [
        f"{key}: true ({why})"
        for key, why in REGISTRATION_SETTINGS.items()
        if registration.get(key) is not True
    ]
    if missing:
        report.line(
            FAIL,
            "encryption",
            f"{registration_path} lacks " + "; ".join(missing),
            f"run `anywhere registration -r {registration_path}`, check {HOMESERVER_SETTINGS}, "
            "and restart the homeserver",
        )
        return
    report.line(
        OK,
        "encryption",
        "the registration asks for device management, key counts and to-device events; the "
        f"bridge checks at start-up that the homeserver delivers them ({HOMESERVER_SETTINGS}) "
        "and logs 'encrypted rooms ready' or which setting is missing",
    )
