"""One plugin's exception is logged with context and stops neither other plugins nor
later events (the dispatcher, without a homeserver)."""

from __future__ import annotations

import structlog

from anywhere.bridge import hookimpl
from anywhere.bridge.config import load_config
from anywhere.bridge.events import MatrixEvent
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.runtime import Bridge


class Faulty:
    @hookimpl
    def anywhere_event_handlers(self):
        async def explode(event, ctx):
            raise RuntimeError("boom")

        return {"m.room.message": explode}


class Recorder:
    def __init__(self):
        self.seen = []

    @hookimpl
    def anywhere_event_handlers(self):
        async def record(event, ctx):
            self.seen.append(event.event_id)

        return {"m.room.message": record, "*": lambda event, ctx: None}


async def test_a_failing_plugin_does_not_stop_other_plugins_or_later_events(config_file):
    config = load_config(config_file, environ={})
    manager = PluginManager()
    recorder = Recorder()
    manager.register(Faulty(), "faulty")
    manager.register(recorder, "recorder")
    bridge = Bridge(config, manager)
    bridge.collect_commands_and_handlers()
    # keep only the two test plugins' handlers (the core's router needs a homeserver)
    bridge.handlers = {
        "m.room.message": [
            (name, handler)
            for name, handler in bridge.handlers["m.room.message"]
            if name in ("faulty", "recorder")
        ]
    }
    events = [
        MatrixEvent(
            {
                "type": "m.room.message",
                "event_id": f"$e{i}",
                "room_id": "!r:x",
                "sender": "@a:x",
                "content": {},
            },
            txn_id="t1",
        )
        for i in range(3)
    ]
    with structlog.testing.capture_logs() as logs:
        for event in events:
            await bridge.dispatch(event)
    assert recorder.seen == ["$e0", "$e1", "$e2"]
    failures = [entry for entry in logs if entry["event"] == "plugin handler failed"]
    assert len(failures) == 3
    assert failures[0]["plugin"] == "faulty"
    assert failures[0]["event_id"] == "$e0"
    assert failures[0]["txn_id"] == "t1"
    assert failures[0]["room_id"] == "!r:x"


async def test_the_operator_can_change_the_level_a_command_needs(config_file):
    config = load_config(config_file, environ={"ANYWHERE__BRIDGE__COMMAND_LEVELS": "{ping: admin}"})
    bridge = Bridge(config)
    bridge.collect_commands_and_handlers()
    assert bridge.commands["ping"].level == "admin"
    assert bridge.commands["whoami"].level == "user"


async def test_a_level_for_an_unknown_command_names_the_key(config_file):
    from anywhere.bridge.errors import ConfigError

    config = load_config(config_file, environ={"ANYWHERE__BRIDGE__COMMAND_LEVELS": "{pong: admin}"})
    bridge = Bridge(config)
    try:
        bridge.collect_commands_and_handlers()
    except ConfigError as exc:
        assert "bridge.command_levels.pong" in str(exc) and "ping" in str(exc)
    else:
        raise AssertionError("an unknown command name was accepted")
