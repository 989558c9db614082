from anywhere.bridge import argument, command, hookimpl


@command("hello", help="Say hello to someone")
@argument("name", nargs="?", default="world")
async def hello(ctx, args):
    await ctx.reply(f"Hello, {args.name}!")


@hookimpl
def anywhere_commands():
    return [hello]
