# acme_roaming/__init__.py
from anywhere.bridge import ConfigSection, hookimpl

from .rules import ROAMING, RoamingBlock


class AcmeRoaming:
    anywhere_contract = "1.1"

    @hookimpl
    def anywhere_policy_rule_classes(self):
        return {"acme_roaming_block": RoamingBlock}

    @hookimpl
    def anywhere_config_section(self):
        # plugins.settings.acme_roaming.roaming: people roaming right now (a stand-in
        # for the carrier's API a real plugin would ask)
        return ConfigSection({"roaming": []})

    @hookimpl
    def anywhere_policy_gather_facts(self, bridge, actor):
        # facts are gathered before the (pure) rules run; this is where I/O belongs
        return {ROAMING: actor in bridge.settings("acme_roaming")["roaming"]}


plugin = AcmeRoaming()
