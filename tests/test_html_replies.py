"""The bot's HTML answers escape what plugins and people wrote (keep it so): help, a
command's usage and --help. In process: the core's command handling with a plugin
whose texts hold HTML, the sends captured."""

from __future__ import annotations

import pytest

from anywhere.bridge import argument, command, hookimpl
from anywhere.bridge.config import load_config
from anywhere.bridge.core import CorePlugin
from anywhere.bridge.events import EventContext, MatrixEvent
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.runtime import Bridge

pytestmark = pytest.mark.asyncio(loop_scope="function")
HOSTILE = "<img src=x onerror=alert(1)> & <b>"


@command("tag", help=f"Tag something {HOSTILE}")
@argument("what", help=f"the thing {HOSTILE}")
async def tag(ctx, args):
    await ctx.reply(f"tagged {args.what}")


class HostilePlugin:
    @hookimpl
    def anywhere_commands(self):
        return [tag]


class DirectChats:
    """Every room is a direct chat (the core asks the homeserver otherwise)."""

    def known_direct(self, room_id: str) -> bool:
        return True


async def answers_to(texts: list[str], config_file, monkeypatch) -> list[dict]:
    sent: list[dict] = []

    async def capture(self, room_id, content, event_type="m.room.message", *, as_user=None):
        sent.append(content)
        return "$answer"

    monkeypatch.setattr(EventContext, "send", capture)
    manager = PluginManager()
    core = CorePlugin()
    manager.register(core, "core")
    manager.register(HostilePlugin(), "hostile")
    config = load_config(config_file, environ={})
    bridge = Bridge(config, manager)
    core.anywhere_startup(bridge)
    core.rooms = core.runner.rooms = DirectChats()
    bridge.collect_commands_and_handlers()
    for n, text in enumerate(texts):
        event = MatrixEvent(
            {
                "type": "m.room.message",
                "room_id": "!room:example.org",
                "sender": "@alice:example.org",
                "event_id": f"$e{n}",
                "content": {"msgtype": "m.text", "body": text},
            }
        )
        await core.runner.handle(event, EventContext(bridge, event, "core"), text)
    return sent


async def test_html_in_help_texts_is_escaped_in_the_formatted_answers(config_file, monkeypatch):
    sent = await answers_to(["!help", "!help tag", "!tag --help"], config_file, monkeypatch)
    assert len(sent) == 3
    for content in sent:
        assert HOSTILE in content["body"]  # the plain text keeps it as written
        formatted = content["formatted_body"]
        assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;" in formatted
        assert "<img" not in formatted


async def test_an_answer_quoting_what_a_person_typed_carries_no_html(config_file, monkeypatch):
    sent = await answers_to([f"!tag a {HOSTILE}", f"!nosuch{HOSTILE}"], config_file, monkeypatch)
    assert len(sent) == 2
    for content in sent:
        assert "formatted_body" not in content or "<img" not in content["formatted_body"]
