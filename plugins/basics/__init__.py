"""Small everyday commands: ``ping`` to see the bot is there, ``whoami`` for your level."""

from __future__ import annotations

import argparse

from anywhere.bridge import EventContext, argument, command, hookimpl


@command("ping", help="Check that the bot answers")
@argument("text", nargs="*", help="words to send back")
async def ping(ctx: EventContext, args: argparse.Namespace) -> None:
    await ctx.reply(" ".join(["pong", *args.text]))


@command("whoami", help="Show your Matrix ID and what you may do here")
async def whoami(ctx: EventContext, args: argparse.Namespace) -> None:
    name = ctx.bridge.permissions.level_name(ctx.event.sender)
    await ctx.reply(f"You are {ctx.event.sender}, with the {name} permission level.")


class BasicsPlugin:
    anywhere_contract = "1.0"

    @hookimpl
    def anywhere_commands(self):
        return [ping, whoami]


plugin = BasicsPlugin()
