"""Subcommands, background commands and the policy check, through the plugin kit: the real
router, parser, policy hook and job queue, with no homeserver."""

from __future__ import annotations

import asyncio

import pytest

from anywhere.bridge import CommandError, Decision, argument, command, hookimpl
from anywhere.bridge.commands import group
from anywhere.bridge.testing import kit as kit_module
from anywhere.bridge.testing.kit import PluginKit


class Tools:
    """A plugin with a group of subcommands and two background commands."""

    tool = group("tool", help="Tools for the test")

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    @tool.subcommand("add", help="Add two numbers")
    @argument("a", type=int)
    @argument("b", type=int)
    async def add(self, ctx, args):
        await ctx.reply(f"{args.a + args.b}")

    @tool.subcommand("wipe", help="Wipe everything", level="admin")
    async def wipe(self, ctx, args):
        await ctx.reply("wiped")

    @tool.subcommand("slow", help="Wait for the test, in the background", background=True)
    async def slow(self, ctx, args):
        self.started.set()
        await self.release.wait()
        await ctx.reply("slow done")

    @hookimpl
    def anywhere_commands(self):
        @command("fast", help="Answer at once")
        async def fast(ctx, args):
            await ctx.reply("fast")

        @command("refuse", help="Refuse, from the background", background=True)
        async def refuse(ctx, args):
            raise CommandError("not today")

        return [self.tool.bind(self), fast, refuse]


async def test_a_group_alone_or_with_help_shows_its_subcommands_one_a_line(plugin_kit):
    kit = await plugin_kit({"tools": Tools()})
    room = kit.room()
    await room.send("!tool")
    alone = await room.next_reply()
    await room.send("!tool help")
    assert await room.next_reply() == alone
    await room.send("!help tool")
    assert await room.next_reply() == alone
    assert "  !tool add a b — Add two numbers" in alone.splitlines()
    assert "  !tool wipe — Wipe everything" in alone.splitlines()


async def test_a_subcommand_has_its_own_help_and_precise_errors(plugin_kit):
    kit = await plugin_kit({"tools": Tools()})
    room = kit.room()
    await room.send("!tool add 2 3")
    assert await room.next_reply() == "5"
    await room.send("!tool add --help")
    assert (await room.next_reply()).startswith("usage: !tool add [-h] a b\n\nAdd two numbers")
    await room.send("!tool add 2 three")
    answer = await room.next_reply()
    assert "argument b: invalid int value: 'three'" in answer
    assert "usage: !tool add [-h] a b" in answer
    assert "Send !tool add --help for details." in answer
    await room.send("!tool ad 2 3")
    answer = await room.next_reply()
    assert "unknown action 'ad'" in answer and "send !tool help for the list" in answer


async def test_a_subcommand_may_need_a_higher_level_than_its_group(plugin_kit):
    kit = await plugin_kit({"tools": Tools()})
    room = kit.room()
    await room.send("!tool wipe")
    assert "!tool wipe needs the admin permission level" in await room.next_reply()
    await room.send("!tool wipe", sender="@admin:kit.test")
    assert await room.next_reply() == "wiped"


async def test_a_background_command_does_not_hold_up_later_events(plugin_kit):
    tools = Tools()
    kit = await plugin_kit({"tools": tools})
    room = kit.room()
    # On the event worker, this would wait for the release below and never return.
    await asyncio.wait_for(room.send("!tool slow"), 5)
    await asyncio.wait_for(tools.started.wait(), 10)  # it runs, as a job
    await room.send("!fast")
    assert await room.next_reply() == "fast"
    tools.release.set()
    assert await room.next_reply() == "slow done"


async def test_a_background_command_keeps_its_command_error(plugin_kit):
    kit = await plugin_kit({"tools": Tools()})
    room = kit.room()
    await room.send("!refuse")
    assert await room.next_reply() == "!refuse: not today"
    assert await kit.bridge.jobs.failed() == []


async def test_the_kit_stops_as_a_background_command_wakes_the_idle_workers(plugin_kit):
    """The bridge stops right after a background command was queued, while the idle job
    workers are being woken: stopping them used to be lost (asyncio.wait_for on Python
    3.11) and the kit's teardown waited forever."""
    kit = await plugin_kit({"tools": Tools()})
    room, wake = kit.room(), kit.bridge.jobs._wake
    async with asyncio.timeout(10):
        while len(wake._waiters) < len(kit.bridge.jobs._workers):  # every worker idle
            await asyncio.sleep(0.01)
    await room.send("!refuse")
    await kit.stop()  # fails (kit.STOP_SECONDS) rather than hangs
    assert not kit.bridge.jobs.running


class Stuck:
    """A plugin whose shutdown waits for something that does not come."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @hookimpl
    async def anywhere_shutdown(self, bridge):
        await self.release.wait()


async def test_a_kit_that_cannot_stop_fails_saying_what_it_waits_for(tmp_path, monkeypatch):
    monkeypatch.setattr(kit_module, "STOP_SECONDS", 0.5)
    stuck = Stuck()
    kit = await PluginKit(tmp_path, {"stuck": stuck}).start()
    with pytest.raises(AssertionError) as failed:
        await kit.stop()
    message = str(failed.value)
    assert message.startswith("stopping the plugin kit's bridge did not finish within 0.5 s")
    assert "in Lifecycle.stop" in message and "in Stuck.anywhere_shutdown" in message
    stuck.release.set()
    await kit.bridge.stop()  # what the cancelled stop left open


class DenyAll:
    @hookimpl
    def anywhere_authorize(self, action):
        if action == "bot.command":
            return Decision.deny("commands are closed today", rule="closed")
        return None


async def test_every_command_passes_the_policy_unless_it_is_exempt(plugin_kit):
    kit = await plugin_kit({"tools": Tools(), "deny": DenyAll()})
    room = kit.room()
    await room.send("!tool add 1 1")
    assert await room.next_reply() == "!tool is not allowed: commands are closed today"
    await room.send("!refuse")  # a background command is checked before it is queued
    assert await room.next_reply() == "!refuse is not allowed: commands are closed today"
    await room.send("!help")  # exempt: the way out of a refusal
    assert "tools:" in await room.next_reply()


class Linker:
    """A group whose ``link`` can be served only while a connector is there."""

    links = group("links", help="Links")

    def __init__(self) -> None:
        self.connected = False

    def can_link(self) -> bool:
        return self.connected

    @links.subcommand("show", help="Show the links")
    async def show(self, ctx, args):
        await ctx.reply("no links")

    @links.subcommand("link", help="Link to elsewhere", available=can_link)
    async def link(self, ctx, args):
        await ctx.reply("linked")

    @hookimpl
    def anywhere_commands(self):
        return [self.links.bind(self)]


async def test_a_subcommand_that_cannot_be_served_is_neither_listed_nor_accepted(plugin_kit):
    linker = Linker()
    kit = await plugin_kit({"linker": linker})
    room = kit.room()
    await room.send("!links help")
    assert "link" not in (await room.next_reply()).replace("links", "")
    await room.send("!links link")
    answer = await room.next_reply()
    assert "unknown action 'link': invalid choice: 'link' (choose from show)" in answer
    linker.connected = True  # a connector came up: asked again at each message
    await room.send("!links link")
    assert await room.next_reply() == "linked"


class Report:
    """A background command that acknowledges first and whose slow part fails once."""

    def __init__(self) -> None:
        self.tries = 0

    @hookimpl
    def anywhere_commands(self):
        @command("report", help="The report of a week, from a slow service", background=True)
        @argument("week", type=int)
        async def report(ctx, args):
            if not 1 <= args.week <= 53:
                raise CommandError(f"there is no week {args.week}")
            await ctx.reply(f"Working on the report of week {args.week}…")
            self.tries += 1
            if self.tries == 1:
                raise ConnectionError("the report service is down")  # tried again later
            await ctx.reply(f"Report of week {args.week}: 42 items")

        return [report]


async def test_a_background_command_says_working_on_it_once_though_tried_again(
    plugin_kit, monkeypatch
):
    """What a ``ctx.defer(...)`` would add is here already (docs/plugins.md, "Why
    ``background=True`` is the one way"): the first reply of a background command is its
    quick answer, sent once even when the slow part after it fails and the job runs the
    handler again."""
    monkeypatch.setattr("anywhere.bridge.jobs.FIRST_RETRY_SECONDS", 0.05)
    report = Report()
    kit = await plugin_kit({"report": report})
    room = kit.room()
    await room.send("!report 48")
    assert await room.next_reply() == "Working on the report of week 48…"
    assert await room.next_reply() == "Report of week 48: 42 items"
    assert report.tries == 2
    assert room.replies() == ["Working on the report of week 48…", "Report of week 48: 42 items"]
    await room.send("!report 54")
    assert await room.next_reply() == "!report: there is no week 54"
    await room.send("!report soon")  # the arguments are checked before the job is stored
    assert "argument week: invalid int value: 'soon'" in await room.next_reply()
    assert report.tries == 2
