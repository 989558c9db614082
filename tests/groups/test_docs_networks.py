"""docs/networks.md shows a connector that works."""

from __future__ import annotations

import re
from pathlib import Path

from anywhere.plugins.groups.connector import Message, Portal, capabilities

DOC = Path(__file__).resolve().parents[2] / "docs" / "networks.md"


async def test_the_example_connector_in_the_docs_is_complete_and_declares_linking():
    block = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    connectors = namespace["anywhere_groups_connectors"](bridge=None)
    (connector,) = connectors
    assert capabilities(connector) == {"group_linking"}
    await connector.start(hub=None, settings={})
    portal = Portal("log", "general", "!room")
    sender = type("Sender", (), {"displayname": "Ana"})()
    remote_id = await connector.handle_matrix_message(portal, sender, Message("$e", "hi"))
    assert remote_id == "general#1" and connector.lines == ["general <Ana> hi"]


def test_the_tests_run_prosody_with_the_configuration_the_docs_give():
    from anywhere.plugins.groups.xmpp.testing import CONFIG

    block = re.findall(r"```lua\n(.*?)```", DOC.read_text(), re.S)[0]
    muc = block[block.index('Component "conference.example.org" "muc"') :].splitlines()
    harness = CONFIG.replace("{{", "{").replace("}}", "}")
    start = harness.index('Component "{muc}" "muc"')
    harness_muc = harness[start:].splitlines()
    assert harness_muc[1 : len(muc)] == muc[1:]  # the same settings, nothing more
    assert not harness_muc[len(muc)].startswith(" ")
    assert "history" not in harness  # Prosody's default room history (20)
