"""The plugin contract's typed surface (bridge/api.py) and its version."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from anywhere_mirror import MirrorPlugin

from anywhere import bridge
from anywhere.bridge import BadSignature, Decision, hookimpl
from anywhere.bridge.api import contract_problem
from anywhere.bridge.commands import Command
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.services import Permissions, Signer
from anywhere.plugins.drive.rooms import FolderRooms


def later_version() -> str:
    major, minor = bridge.CONTRACT_VERSION
    return f"{major}.{minor + 1}"


class NeedsLater:
    anywhere_contract = later_version()

    @hookimpl
    def anywhere_commands(self):
        return []


def test_a_plugin_needing_a_later_contract_is_refused_naming_it_and_both_versions():
    manager = PluginManager()
    with pytest.raises(PluginLoadError) as caught:
        manager.register(NeedsLater(), "weather")
    message = str(caught.value)
    ours = ".".join(map(str, bridge.CONTRACT_VERSION))
    assert f"plugin 'weather' needs the Anywhere plugin contract {later_version()}" in message
    assert f"this Anywhere offers {ours}, which is older" in message
    assert "upgrade Anywhere" in message
    assert "weather" not in manager.names()  # nothing half-registered


def test_the_example_plugin_is_refused_by_an_anywhere_older_than_it_declares(monkeypatch):
    """The installed example (examples/mirror-store declares ``anywhere_contract =
    "1.0"``), loaded by its entry point as the bridge does, by an older Anywhere."""
    monkeypatch.setattr("anywhere.bridge.api.CONTRACT_VERSION", (1, 0))
    PluginManager().load_enabled(["mirror_store", "drive"])  # the same version: loaded
    monkeypatch.setattr("anywhere.bridge.api.CONTRACT_VERSION", (0, 9))
    with pytest.raises(
        PluginLoadError,
        match="plugin 'mirror_store' needs the Anywhere plugin "
        "contract 1.0, and this Anywhere offers 0.9, which is older",
    ):
        PluginManager().load_enabled(["mirror_store", "drive"])
    assert MirrorPlugin.anywhere_contract == "1.0"


def test_a_plugin_for_an_earlier_major_version_or_a_bad_declaration_is_refused(monkeypatch):
    monkeypatch.setattr("anywhere.bridge.api.CONTRACT_VERSION", (2, 0))
    assert "was made for the Anywhere plugin contract 1.0" in contract_problem("old", "1.0")
    assert "upgrade the plugin" in contract_problem("old", "1.0")
    assert contract_problem("fine", "2.0") is None
    assert contract_problem("fine", (2, 0)) is None
    assert contract_problem("fine", 2) is None
    assert 'write it as "MAJOR.MINOR", for example "2.0"' in contract_problem("odd", "v1")


def test_decision_reads_the_answers_plugins_give():
    assert Decision.of(None) == Decision(True, "no policy rule applies", None)
    assert Decision.of(Decision.deny("no", "r1")) == Decision(False, "no", "r1")

    class EngineDecision:  # the policy engine's own decision (policy/model.py) has these
        allowed, reason, rule_id = False, "unverified", "verify"

    assert Decision.of(EngineDecision()) == Decision(False, "unverified", "verify")
    with pytest.raises(TypeError, match="must return a bridge.Decision or None"):
        Decision.of("yes")


def test_signed_values_verify_for_their_purpose_only():
    signer = Signer("secret")
    token = signer.sign({"folder": "f1", "n": 2}, "drive.invite")
    assert signer.unsign(token, "drive.invite") == {"folder": "f1", "n": 2}
    with pytest.raises(BadSignature):
        signer.unsign(token, "calls.invite")
    with pytest.raises(BadSignature):
        Signer("other secret").unsign(token, "drive.invite")
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    with pytest.raises(BadSignature):
        signer.unsign(tampered, "drive.invite")
    assert signer.verify("a|b", "p", signer.signature("a|b", "p"))
    assert not signer.verify("a|b", "q", signer.signature("a|b", "p"))


def test_links_the_drive_posted_before_the_signing_service_still_verify():
    """Before, the drive signed links itself with a key made from the as_token."""
    token = "as-token-of-the-bridge"
    key = hashlib.sha256(b"drive-links|" + token.encode()).digest()
    message = "!room:example.org|node1|3|@ann:example.org"
    posted = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]

    class Host:
        signer = Signer(token)

    rooms = FolderRooms(Host(), drive=None)
    args = ("!room:example.org", "node1", 3, "@ann:example.org")
    assert rooms.link_signature(*args) == posted
    assert rooms.link_is_valid(*args, posted)
    assert not rooms.link_is_valid("!room:example.org", "node1", 4, "@ann:example.org", posted)


def test_permission_levels_and_a_commands_level_come_from_one_place():
    commands = {"policy": Command("policy", None, level="admin")}
    permissions = Permissions(
        {"example.org": "user", "@boss:example.org": "admin", "@troll:example.org": "none"},
        lambda: commands,
    )
    assert permissions.level_name("@kim:example.org") == "user"
    assert permissions.level_name("@boss:example.org") == "admin"
    assert permissions.level_name("@troll:example.org") == "none"
    assert permissions.level_name("@kim:elsewhere.org") == "none"
    assert permissions.at_least("@boss:example.org", "admin")
    assert not permissions.at_least("@kim:example.org", "admin")
    assert permissions.command_level("policy") == "admin"
    assert permissions.command_level("unknown") == "user"
    with pytest.raises(ValueError, match="unknown permission level 'boss'"):
        permissions.at_least("@kim:example.org", "boss")


@pytest.mark.asyncio(loop_scope="function")
async def test_direct_chats_are_what_the_core_recorded(anywhere_database_url):
    from types import SimpleNamespace

    from anywhere.bridge.core import RoomBook
    from anywhere.bridge.schema import CORE_MIGRATIONS
    from anywhere.bridge.services import DirectChats
    from anywhere.storage import open_database, run_migrations

    db = await open_database(anywhere_database_url)
    try:
        await run_migrations(db, [CORE_MIGRATIONS])
        book = RoomBook(SimpleNamespace(db=db))  # the core plugin's writer
        await book.remember("!dm:example.org", is_direct=True, dm_user="@ann:example.org")
        await book.remember("!group:example.org", encrypted=True)
        chats = DirectChats(lambda: db)
        assert await chats.is_direct("!dm:example.org")
        assert not await chats.is_direct("!group:example.org")
        assert not await chats.is_direct("!unknown:example.org")
        assert await chats.direct_chat_with("@ann:example.org") == "!dm:example.org"
        assert await chats.direct_chat_with("@bob:example.org") is None
    finally:
        await db.stop()
    with pytest.raises(RuntimeError, match="the bridge has not started"):
        await DirectChats(lambda: None).is_direct("!dm:example.org")


def test_the_runtime_offers_everything_the_host_protocol_promises(config_file):
    """anywhere.bridge.api.Host is what plugins are told they get: the runtime must keep it."""
    import inspect

    from anywhere.bridge import api
    from anywhere.bridge.config import load_config
    from anywhere.bridge.runtime import Bridge

    runtime = Bridge(load_config(config_file))
    promised = set(api.Host.__annotations__) | {
        name for name, _ in inspect.getmembers(api.Host) if not name.startswith("_")
    }
    assert {"signer", "permissions", "media", "authorize", "settings"} <= promised
    missing = {name for name in promised if not hasattr(type(runtime), name)} - {
        name for name in promised if name in vars(runtime)
    }
    assert missing == set()
    services = {
        "permissions": api.Permissions,
        "signer": api.Signer,
        "direct_chats": api.DirectChats,
        "media": api.Media,
        "extensions": api.Extensions,
    }
    for name, protocol in services.items():
        assert isinstance(getattr(runtime, name), protocol), name
    assert isinstance(runtime.info, api.BridgeInfo)
    assert not hasattr(runtime.signer, "secret") and not hasattr(runtime.media, "token")
