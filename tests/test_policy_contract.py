"""The policy plugin on the plugin contract (issue 15): its extension hooks declared by
itself (plugins/policy/hookspecs.py), the names from before still read with a warning,
its hashing key from the runtime's signer, its answers as ``bridge.Decision``."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from anywhere.bridge import Decision, hookimpl
from anywhere.bridge.config import load_config
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.runtime import Bridge
from anywhere.plugins.policy import PolicyPlugin, collect_rule_classes
from anywhere.plugins.policy.facts import FactGatherer
from anywhere.policy import Rule
from anywhere.policy.verification import DEFAULT_LIMITS, PendingVerification, hash_phone, key_id
from anywhere.storage import open_database, run_migrations

PHONE = "+821077770001"


def runtime_with(config_file: Path, *plugins: tuple[str, object], salt: str = "") -> Bridge:
    """The real runtime on ``config_file`` (``basics`` and ``policy`` enabled), the
    verification salt set to ``salt``, with ``plugins`` registered beside them."""
    config = yaml.safe_load(config_file.read_text())
    config["plugins"]["settings"]["policy"]["verification"]["salt"] = salt
    config_file.write_text(yaml.safe_dump(config))
    manager = PluginManager()
    policy = PolicyPlugin()
    manager.register(policy, "policy")
    for name, plugin in plugins:
        manager.register(plugin, name)
    runtime = Bridge(load_config(config_file), manager)
    policy.bridge = runtime
    return runtime


def policy_of(runtime: Bridge) -> PolicyPlugin:
    return runtime.plugins.pm.get_plugin("policy")


@contextlib.asynccontextmanager
async def started(runtime: Bridge, folder: Path) -> AsyncIterator[PolicyPlugin]:
    """The policy plugin started on a fresh SQLite database (no homeserver needed)."""
    policy = policy_of(runtime)
    runtime.db = await open_database(f"sqlite:{folder / 'anywhere.db'}")
    try:
        migrations = [m for _, m in runtime.plugins.call_each("anywhere_migrations") if m]
        await run_migrations(runtime.db, migrations)
        await policy.anywhere_startup(runtime)
        try:
            yield policy
        finally:
            await policy.anywhere_shutdown(runtime)
    finally:
        await runtime.db.stop()


async def usage_of(runtime: Bridge, user_id: str) -> float:
    return await runtime.db.fetchval("SELECT amount FROM policy_usage WHERE user_id = $1", user_id)


class Roaming(Rule):
    type_name = "test_roaming"
    family = "carrier"

    def evaluate(self, request):
        if request.facts.get("test_roaming"):
            return self.deny("no calls while roaming", "roaming")
        return self.allow("not roaming", "home")


class NewStyle:
    def __init__(self) -> None:
        self.usage: list[tuple[str, str, float]] = []

    @hookimpl
    def anywhere_policy_rule_classes(self):
        return {"test_roaming": Roaming}

    @hookimpl
    def anywhere_policy_gather_facts(self, actor):
        return {"test_roaming": actor == "@roamer:example.org"}

    @hookimpl
    def anywhere_policy_record_usage(self, user_id, metric, amount):
        self.usage.append((user_id, metric, amount))


class OldStyle:
    """A plugin written before contract 1.1, on the core's hook names."""

    def __init__(self) -> None:
        self.usage: list[tuple[str, str, float]] = []

    @hookimpl
    def anywhere_policy_rule_types(self):
        return {"test_old_roaming": Roaming}

    @hookimpl
    async def anywhere_policy_facts(self, bridge, actor, action):
        return {"old_fact": f"{actor} {action}"}

    @hookimpl
    def anywhere_record_usage(self, user_id, metric, amount):
        self.usage.append((user_id, metric, amount))


async def test_the_hooks_the_policy_declares_reach_it(config_file, tmp_path):
    new = NewStyle()
    runtime = runtime_with(config_file, ("roaming", new))
    assert collect_rule_classes(runtime) == {"test_roaming": Roaming}
    gatherer = FactGatherer(runtime, runtime.settings("policy"))
    provided = await gatherer.provided_facts("@roamer:example.org", "call.place", None, {})
    assert provided == [{"test_roaming": True}]
    async with started(runtime, tmp_path):
        await runtime.record_usage("@kim:example.org", "mvoip_mb", 1.5)
        assert new.usage == [("@kim:example.org", "mvoip_mb", 1.5)]
        assert await usage_of(runtime, "@kim:example.org") == 1.5  # the policy's own total


async def test_the_old_hook_names_still_work_with_a_warning_naming_the_new_ones(
    config_file, tmp_path
):
    old = OldStyle()
    with pytest.warns(DeprecationWarning) as warned:
        runtime = runtime_with(config_file, ("old", old))
    said = " ".join(str(w.message) for w in warned)
    for new_name in (
        "anywhere_policy_rule_classes",
        "anywhere_policy_gather_facts",
        "anywhere_policy_record_usage",
    ):
        assert new_name in said
    assert collect_rule_classes(runtime) == {"test_old_roaming": Roaming}
    gatherer = FactGatherer(runtime, runtime.settings("policy"))
    provided = await gatherer.provided_facts("@kim:example.org", "call.place", None, {})
    assert provided == [{"old_fact": "@kim:example.org call.place"}]
    async with started(runtime, tmp_path):
        await runtime.record_usage("@kim:example.org", "mvoip_mb", 2.0)
        assert old.usage == [("@kim:example.org", "mvoip_mb", 2.0)]
        assert await usage_of(runtime, "@kim:example.org") == 2.0


def test_a_rule_type_given_by_two_plugins_stops_start_up_naming_both(config_file):
    class Again:
        @hookimpl
        def anywhere_policy_rule_types(self):
            return {"test_roaming": Roaming}

    with pytest.warns(DeprecationWarning):
        runtime = runtime_with(config_file, ("roaming", NewStyle()), ("again", Again()))
    with pytest.raises(PluginLoadError, match="plugin 'again' gives the rule type 'test_roaming'"):
        collect_rule_classes(runtime)


def test_the_policy_hooks_need_the_policy_plugin(config_file):
    manager = PluginManager()
    manager.register(NewStyle(), "roaming")
    with pytest.raises(PluginLoadError, match="enable the plugin that offers it"):
        manager.check_hooks()


@pytest.mark.parametrize("salt", ["", "a-new-random-secret"])
def test_records_hashed_with_the_key_from_the_hs_token_still_verify(config_file, salt):
    """Before contract 1.1 the plugin hashed numbers and codes (with no salt set) with a
    key it derived from ``appservice.hs_token`` itself; it now asks ``bridge.signer`` for
    that key, and what was hashed with the old one keeps verifying."""
    hs_token = yaml.safe_load(config_file.read_text())["appservice"]["hs_token"]
    old_key = hashlib.sha256(("anywhere-verification:" + hs_token).encode()).digest()
    now = time.time()
    pending, code = PendingVerification.start(
        PHONE, salt=old_key, key="", now=now, limits=DEFAULT_LIMITS
    )
    verified_before = hash_phone(PHONE, old_key)

    runtime = runtime_with(config_file, salt=salt)
    keys = policy_of(runtime).verification_keys()
    # the records a person verified with before are found (one number, one account) ...
    assert verified_before in {hash_phone(PHONE, key) for key in keys.values()}
    # ... and a code sent before still verifies (as !verify code checks it)
    _, outcome = pending.check(code, salt=keys.get(pending.key_id, keys[""]), now=now)
    assert outcome.verified
    if salt:  # new hashes use the configured salt, named by its id
        primary_id, primary = next(iter(keys.items()))
        assert primary_id == key_id(primary) and primary != old_key
    assert runtime.signer.key("other.purpose") not in (old_key, runtime.signer.key("x.y"))


async def test_the_policy_answers_a_bridge_decision(config_file, tmp_path):
    (tmp_path / "rules.yaml").write_text("- type: test_roaming\n  id: no-roaming\n")
    config = yaml.safe_load(config_file.read_text())
    config["plugins"]["settings"]["policy"]["rules_file"] = "rules.yaml"  # beside the config
    config_file.write_text(yaml.safe_dump(config))
    runtime = runtime_with(config_file, ("roaming", NewStyle()), salt="s")
    async with started(runtime, tmp_path) as policy:
        denied = await policy.anywhere_authorize(
            runtime, "@roamer:example.org", "call.place", None, {}
        )
        assert type(denied) is Decision
        assert denied == Decision(False, "no calls while roaming", "no-roaming")
        allowed = await policy.anywhere_authorize(
            runtime, "@kim:example.org", "call.place", None, {}
        )
        assert allowed == Decision(True, "not roaming", "no-roaming")


@pytest.mark.asyncio(loop_scope="function")
async def test_the_bot_opens_a_direct_chat_once_and_remembers_it(anywhere_database_url):
    """``bridge.direct_chats.open_with``: the policy's private answers go there."""
    from anywhere.bridge.schema import CORE_MIGRATIONS
    from anywhere.bridge.services import DirectChats

    class Bot:  # records the rooms it is asked to create
        def __init__(self) -> None:
            self.created: list[dict] = []

        async def create_room(self, **kwargs) -> str:
            self.created.append(kwargs)
            return f"!dm{len(self.created)}:example.org"

    db = await open_database(anywhere_database_url)
    bot = Bot()
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        chats = DirectChats(lambda: db, lambda: bot, "Anywhere")
        room = await chats.open_with("@ann:example.org")
        assert await chats.open_with("@ann:example.org") == room  # not a second room
        assert [c["invitees"] for c in bot.created] == [["@ann:example.org"]]
        assert bot.created[0]["is_direct"] and bot.created[0]["name"] == "Anywhere"
        assert await chats.is_direct(room)
        assert await chats.is_direct(room, with_user="@ann:example.org")
        assert not await chats.is_direct(room, with_user="@bob:example.org")
        assert await chats.direct_chat_with("@ann:example.org") == room
    finally:
        await db.stop()
