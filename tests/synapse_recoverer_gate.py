"""A Synapse module for tests: holds Synapse's appservice recoverer at the moment it has
found its queue empty and is about to mark the appservice up again, so that a test can
make events arrive in exactly that moment (see tests/test_inbox_e2e_recoverer_race.py).

Loaded by Synapse (``modules:`` in homeserver.yaml) with ``config: {dir: <folder>}``: on
reaching that moment it creates ``<dir>/recovered`` and waits until ``<dir>/release``
exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synapse.appservice.scheduler import _TransactionController


class RecovererGate:
    def __init__(self, config: dict[str, Any], api: Any) -> None:
        folder = Path(config["dir"])
        mark_up = _TransactionController.on_recovered

        async def on_recovered(controller: _TransactionController, recoverer: Any) -> None:
            (folder / "recovered").touch()
            while not (folder / "release").exists():
                await api.sleep(0.05)
            await mark_up(controller, recoverer)

        _TransactionController.on_recovered = on_recovered

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config
