"""How one-time verification codes reach people. Pluggable: log, file, HTTP SMS gateway.

``log`` and ``file`` write the number and the code in clear: they are for the dev stack
(a homeserver named ``localhost`` on this machine); anywhere else the bridge warns loudly
at start-up. The ``file`` outbox is pruned of codes past their lifetime."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from anywhere.bridge.api import Host

log = structlog.get_logger("anywhere.policy.verify")


DEV_SENDERS = ("log", "file")


class SendFailed(Exception):
    pass


def is_dev_homeserver(domain: str, url: str) -> bool:
    """The dev stack's homeserver: named ``localhost`` and reached on this machine."""
    host = urlsplit(url).hostname or ""
    return domain == "localhost" and host in ("127.0.0.1", "localhost", "::1")


def dev_sender_warning(settings: dict[str, Any], domain: str, url: str) -> str | None:
    """The loud warning for a ``log``/``file`` sender outside the dev stack, or None."""
    sender = settings["sender"]
    if sender not in DEV_SENDERS or is_dev_homeserver(domain, url):
        return None
    where = "the bridge's log" if sender == "log" else f"the file {settings['outbox']}"
    return (
        f"verification.sender is {sender!r}: phone numbers and codes are written in clear "
        f"to {where} and no SMS is sent. It is for the dev stack only; configure "
        "sender: http with your SMS gateway (docs/policy.md)."
    )


def prune_outbox(path: Path, before: float) -> int:
    """Drop the ``file`` sender's lines written before the Unix time ``before`` (their
    codes have expired); returns how many were dropped."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            written = float(json.loads(line).get("time", 0))
        except (ValueError, AttributeError):
            written = 0.0
        if written >= before:
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), "utf-8")
        os.replace(tmp, path)
    return dropped


async def send_code(
    bridge: Host, settings: dict[str, Any], user_id: str, phone: str, code: str
) -> None:
    """Deliver ``code`` to ``phone`` by the configured sender; raises SendFailed."""
    text = f"Your Anywhere verification code is {code}"
    sender = settings["sender"]
    if sender == "log":
        log.warning(
            "verification code (log sender: configure a real one for production)",
            user_id=user_id,
            phone=phone,
            code=code,
        )
    elif sender == "file":
        path = Path(settings["outbox"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(
                json.dumps(
                    {
                        "user_id": user_id,
                        "to": phone,
                        "code": code,
                        "text": text,
                        "time": time.time(),
                    }
                )
                + "\n"
            )
    else:
        headers = {}
        if settings["http_token"]:
            headers["Authorization"] = f"Bearer {settings['http_token']}"
        try:
            async with bridge.http.post(
                settings["http_url"], json={"to": phone, "text": text}, headers=headers
            ) as resp:
                if resp.status >= 300:
                    raise SendFailed(f"the SMS gateway answered HTTP {resp.status}")
        except OSError as exc:
            raise SendFailed(f"the SMS gateway could not be reached: {exc}") from exc
