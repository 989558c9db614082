"""Small everyday commands: ``ping`` to see the bot is there, ``whoami`` for your level."""

from __future__ import annotations

import argparse

from bridge import EventContext, argument, command, hookimpl
from bridge.commands import LEVELS, level_for


@command("ping", help="Check that the bot answers")
@argument("text", nargs="*", help="words to send back")
async def ping(ctx: EventContext, args: argparse.Namespace) -> None:
    await ctx.reply(" ".join(["pong", *args.text]))


@command("whoami", help="Show your Matrix ID and what you may do here")
async def whoami(ctx: EventContext, args: argparse.Namespace) -> None:
    permissions = ctx.bridge.config["bridge.permissions"]
    level = level_for(ctx.event.sender, permissions)
    name = next((k for k, v in LEVELS.items() if v == level), "none")
    await ctx.reply(f"You are {ctx.event.sender}, with the {name} permission level.")


class BasicsPlugin:
    @hookimpl
    def anywhere_commands(self):
        return [ping, whoami]


plugin = BasicsPlugin()
