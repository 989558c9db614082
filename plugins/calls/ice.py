"""Which addresses ICE uses: local host addresses to gather, and STUN/TURN servers.

aioice gathers every non-loopback address of the machine and never a loopback one; an
operator (or a test in a loopback-only network) limits gathering with
``plugins.settings.calls.ice_addresses``. STUN/TURN servers come from the config or
from the homeserver's ``/voip/turnServer`` (the same TURN server Element uses),
refreshed before its ``ttl`` runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_ORIGINAL_HOST_ADDRESSES: Callable[..., list[str]] = aioice.ice.get_host_addresses


def limit_gathering(addresses: list[str]) -> None:
    """Gather host candidates on ``addresses`` only; an empty list restores aioice's own
    choice (every non-loopback address). Applies to the whole process, as aioice reads a
    module-level function."""
    if not addresses:
        aioice.ice.get_host_addresses = _ORIGINAL_HOST_ADDRESSES
        return
    chosen = list(addresses)

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = configured


class IceServers:
    """The ICE servers for a new peer connection.

    ``fetch_turn`` is ``async () -> dict`` returning the homeserver's turnServer answer
    (``uris``, ``username``, ``password``, ``ttl``) or ``{}``; None when the operator
    turned it off.
    """

    def __init__(
        self,
        configured: list[dict[str, Any]],
        fetch_turn: Callable[[], Any] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configured = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in configured
        ]
        self.fetch_turn = fetch_turn
        self.clock = clock
        self._turn: list[RTCIceServer] = []
        self._expires = 0.0

    async def configuration(self) -> RTCConfiguration:
        servers = list(self.configured)
        if self.fetch_turn is not None:
            servers += await self._homeserver_turn()
        return RTCConfiguration(iceServers=servers)

    async def _homeserver_turn(self) -> list[RTCIceServer]:
        if self.clock() < self._expires:
            return self._turn
        try:
            answer = await self.fetch_turn()
        except Exception:
            answer = {}
        uris = answer.get("uris") if isinstance(answer, dict) else None
        ttl = answer.get("ttl", 300) if isinstance(answer, dict) else 300
        if isinstance(uris, list) and uris:
            self._turn = [
                RTCIceServer(
                    urls=[u for u in uris if isinstance(u, str)],
                    username=answer.get("username"),
                    credential=answer.get("password"),
                )
            ]
        else:
            self._turn = []
        # refresh a little before the credentials run out (and at most every 5 minutes
        # when the homeserver has no TURN server, so a new one is noticed)
        self._expires = self.clock() + max(30.0, min(float(ttl), 86_400.0) * 0.9)
        return self._turn
