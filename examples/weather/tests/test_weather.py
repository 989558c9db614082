import anywhere_weather

from anywhere.bridge.testing.kit import serve


async def test_weather_answers_from_the_service_in_the_background(plugin_kit):
    async with serve({"/Paris": "Paris: ☀️ +21°C"}) as url:
        settings = {"weather": {"api_url": url}}
        kit = await plugin_kit({"weather": anywhere_weather}, settings=settings)
        room = kit.room()
        await room.send("!weather Paris")
        assert await room.next_reply() == "Paris: ☀️ +21°C"
        await room.send("!weather Atlantis")
        assert await room.next_reply() == "!weather: I know no city called 'Atlantis'"
