"""How one-time verification codes reach people. Pluggable: log, file, HTTP SMS gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = structlog.get_logger("anywhere.policy.verify")


class SendFailed(Exception):
    pass


async def send_code(
    bridge: Bridge, settings: dict[str, Any], user_id: str, phone: str, code: str
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
