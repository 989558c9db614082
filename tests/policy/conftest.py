"""Helpers for the policy engine tests: build an engine from rule configs and decide."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from anywhere.policy import Decision, Engine, Request


@pytest.fixture
def decide() -> Callable[..., Decision]:
    """``decide(rules, action, actor=..., room_id=..., **facts)`` → the engine's decision."""

    def run(
        rules: list[dict],
        action: str = "call.place",
        *,
        actor: str = "@kim:example.org",
        room_id: str | None = None,
        **facts,
    ) -> Decision:
        engine = Engine.from_config(rules)
        return engine.evaluate(Request(actor, action, room_id=room_id, facts=facts))

    return run
