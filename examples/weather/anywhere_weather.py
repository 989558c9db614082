"""!weather CITY: asks a slow weather service, in the background."""

from anywhere.bridge import CommandError, ConfigSection, argument, command, hookimpl


@hookimpl
def anywhere_config_section():
    return ConfigSection({"api_url": "https://wttr.in"})


@command("weather", help="The weather in a city", background=True)
@argument("city")
async def weather(ctx, args):
    url = f"{ctx.bridge.settings(ctx.plugin)['api_url']}/{args.city}"
    async with ctx.bridge.http.get(url, params={"format": "3"}) as resp:
        if resp.status == 404:
            raise CommandError(f"I know no city called {args.city!r}")
        resp.raise_for_status()  # a failing service: the job is tried again later
        await ctx.reply(await resp.text())


@hookimpl
def anywhere_commands():
    return [weather]
