"""docs/policy.md's rule written as a separate package (examples/acme-roaming), tested as
its author would: the rule alone, and end to end through the bridge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anywhere.bridge.testing.stack import Stack
from anywhere.policy import Engine, Request

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "acme-roaming" / "acme_roaming"


def test_the_docs_show_the_example_package_as_it_is():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "policy.md").read_text(), re.S)
    for name in ("rules.py", "__init__.py"):
        assert (EXAMPLE / name).read_text() in blocks, f"docs/policy.md differs from {name}"


def test_calls_are_blocked_while_roaming():
    from acme_roaming.rules import RoamingBlock

    engine = Engine.from_config(
        [{"type": "acme_roaming_block", "allowed_countries": ["KR"]}],
        extra_types={"acme_roaming_block": RoamingBlock},
    )
    decision = engine.evaluate(
        Request("@kim:example.org", "call.place", facts={"acme_roaming": True})
    )
    assert decision.outcome == "deny" and decision.code == "acme_roaming"


@pytest.fixture(scope="module")
def roaming_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("roaming")
    (workdir / "rules.yaml").write_text("- type: acme_roaming_block\n  id: no-roaming-calls\n")
    settings = {
        "policy": {"rules_file": str(workdir / "rules.yaml")},
        "acme_roaming": {"roaming": ["@roamer:localhost"]},
    }
    stack = Stack(workdir, ["basics", "policy", "acme_roaming"], settings)
    with stack:
        yield stack


@pytest.mark.e2e
async def test_the_plugins_rule_type_and_facts_decide_in_the_bridge(roaming_stack):
    bot = roaming_stack.bot_id
    for localpart, expected in (
        ("roamer", "Decision: DENY by no-roaming-calls"),
        ("homebody", "Decision: ALLOW by no-roaming-calls"),
    ):
        person = await roaming_stack.user(localpart)
        try:
            room = await person.dm(bot)
            await person.send_text(room, "!policy explain call.place")
            reply = await person.wait_for_notice(room, bot, "Decision:")
            assert expected in reply["content"]["body"]
        finally:
            await person.close()
