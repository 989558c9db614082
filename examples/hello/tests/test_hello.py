"""The hello plugin's unit tests: in-process, with the plugin kit (no homeserver)."""

import anywhere_hello


async def test_hello_greets_the_name_given(plugin_kit):
    kit = await plugin_kit({"hello": anywhere_hello})
    room = kit.room()
    await room.send("!hello Ada")
    assert await room.next_reply() == "Hello, Ada!"


async def test_hello_without_a_name_greets_the_world_in_a_direct_chat(plugin_kit):
    kit = await plugin_kit({"hello": anywhere_hello})
    dm = await kit.direct_chat()
    await dm.send("hello")  # the prefix is optional in a direct chat
    assert await dm.next_reply() == "Hello, world!"


async def test_a_wrong_argument_gets_the_usage(plugin_kit):
    kit = await plugin_kit({"hello": anywhere_hello})
    room = kit.room()
    await room.send("!hello Ada Lovelace")
    answer = await room.next_reply()
    assert "unrecognized arguments: Lovelace" in answer
    assert "usage: !hello [-h] [name]" in answer
