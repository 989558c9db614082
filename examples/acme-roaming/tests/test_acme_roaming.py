"""The roaming rule in the bridge, in-process with the plugin kit: the policy plugin (an
installed entry point) loads the package's rule type and asks its facts."""

from acme_roaming import AcmeRoaming


async def test_people_roaming_are_refused_calls_and_others_are_not(plugin_kit, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- type: acme_roaming_block\n  id: no-roaming-calls\n")
    settings = {
        "policy": {"rules_file": str(rules)},
        "acme_roaming": {"roaming": ["@roamer:kit.test"]},
    }
    kit = await plugin_kit({"acme_roaming": AcmeRoaming()}, enabled=["policy"], settings=settings)
    for person, expected in (
        ("@roamer:kit.test", "Decision: DENY by no-roaming-calls"),
        ("@homebody:kit.test", "Decision: ALLOW by no-roaming-calls"),
    ):
        dm = await kit.direct_chat(person)
        await dm.send("!policy explain call.place")
        assert expected in await dm.next_reply()
