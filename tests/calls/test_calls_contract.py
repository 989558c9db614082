"""The calls plugin on the plugin contract (issue 15): its extension hook declared by
itself (plugins/calls/hookspecs.py), the old name still read with a warning, and call
modes given a :class:`CallHost` — what a mode may use — instead of the whole manager."""

from __future__ import annotations

import inspect
from array import array
from types import SimpleNamespace

import pytest
import structlog

from anywhere.bridge import Decision, MatrixEvent, hookimpl
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.plugins.calls import plugin as calls_plugin
from anywhere.plugins.calls.audio import FRAME_SAMPLES, SAMPLE_RATE
from anywhere.plugins.calls.host import CallHost
from anywhere.plugins.calls.manager import CallManager
from anywhere.plugins.calls.mixer import Conference
from anywhere.plugins.calls.modes import MODES, CallMode, ConferenceCall, VoiceMemo
from anywhere.plugins.calls.plugin import collect_modes
from anywhere.plugins.calls.settings import DEFAULTS
from anywhere.plugins.calls.state import Route


class Parrot(CallMode):
    name = "parrot"


def test_modes_given_through_the_calls_plugins_own_hook_are_collected():
    class ModePlugin:
        @hookimpl
        def anywhere_calls_modes(self):
            return {"parrot": Parrot}

    manager = PluginManager()
    manager.register(calls_plugin, "calls")
    manager.register(ModePlugin(), "parrot_plugin")
    manager.check_hooks()  # the calls plugin declares the hook
    assert collect_modes(manager)["parrot"] is Parrot


def test_the_old_hook_name_still_works_with_a_warning_naming_the_new_one():
    class OldPlugin:
        @hookimpl
        def anywhere_call_modes(self):
            return {"parrot": Parrot}

    manager = PluginManager()
    manager.register(calls_plugin, "calls")
    with pytest.warns(DeprecationWarning, match="implement anywhere_calls_modes()"):
        manager.register(OldPlugin(), "old")
    assert collect_modes(manager)["parrot"] is Parrot


def test_a_mode_name_given_under_both_names_stops_start_up_naming_both_plugins():
    class New:
        @hookimpl
        def anywhere_calls_modes(self):
            return {"parrot": Parrot}

    class Old:
        @hookimpl
        def anywhere_call_modes(self):
            return {"parrot": Parrot}

    manager = PluginManager()
    manager.register(calls_plugin, "calls")
    manager.register(New(), "new")
    with pytest.warns(DeprecationWarning):
        manager.register(Old(), "old")
    with pytest.raises(Exception, match="'old' gives the call mode 'parrot'.*'new'"):
        collect_modes(manager)


def test_the_call_manager_is_a_call_host():
    promised = {n for n, _ in inspect.getmembers(CallHost) if not n.startswith("_")}
    assert {"conference", "hang_up_soon", "announce", "announce_soon", "intent"} <= promised
    assert all(callable(getattr(CallManager, name)) for name in promised)
    assert "self.settings = settings" in inspect.getsource(CallManager.__init__)


def test_a_modes_old_self_manager_is_its_host_with_a_warning_naming_self_host():
    host = SimpleNamespace(settings=dict(DEFAULTS))
    mode = CallMode(host, SimpleNamespace(call=None))
    with pytest.warns(DeprecationWarning, match=r"CallMode.manager .*use self.host"):
        assert mode.manager is host


class StrictHost:
    """Exactly the members of CallHost, recording what modes ask of it."""

    def __init__(self) -> None:
        self.settings = dict(DEFAULTS)
        self.asked: list[tuple] = []
        self.conferences: dict[str, Conference] = {}

    def conference(self, room_id: str) -> Conference:
        return self.conferences.setdefault(room_id, Conference(room_id, clock=False))

    def hang_up_soon(self, live, reason: str) -> None:
        self.asked.append(("hang_up_soon", reason))

    async def announce(self, live, text: str) -> None:
        self.asked.append(("announce", text))

    def announce_soon(self, live, text: str) -> None:
        self.asked.append(("announce_soon", text))

    def intent(self, user_id: str):
        self.asked.append(("intent", user_id))
        raise AssertionError("not reached in this test")

    async def upload(self, room_id: str, data: bytes, user_id: str, *, mime_type, filename):
        self.asked.append(("upload", user_id))
        raise AssertionError("not reached in this test")


def a_call(mode: str, **options):
    call = SimpleNamespace(
        key="!conf:example.org",
        our_user="@anywhere:example.org",
        their_user="@ann:example.org",
        options=options,
    )
    return SimpleNamespace(call=call, key="!conf:example.org|c1", connected_at=1.0)


def test_the_built_in_modes_need_only_what_call_host_offers():
    host = StrictHost()
    assert isinstance(host, CallHost)
    for mode in MODES.values():
        made = mode(host, a_call(mode.name, seconds=1))
        assert made.host is host and made.manager is host  # the old name, for a release
        assert made.max_seconds() > 0
    memo = VoiceMemo(host, a_call("memo", seconds=1))
    memo.greeting.remaining = 0  # the tone is over
    memo.on_audio(array("h", [1000] * SAMPLE_RATE))
    assert ("hang_up_soon", "user_hangup") in host.asked  # full: it asks to end the call
    conference = ConferenceCall(host, a_call("conference"))
    conference.on_audio(array("h", [1000] * FRAME_SAMPLES))
    conference.on_connected()
    kind, text = host.asked[-1]
    assert kind == "announce_soon" and text.startswith("@ann:example.org joined the conference")


# ----- the policy is asked before the state machine takes the call -----

BOT = "@anywhere:localhost"
ROOM = "!room:localhost"


class PolicyHost:
    """What the call manager uses of ``bridge.Host`` here; its policy refuses every
    call and notes what the manager's book held while it was asked."""

    def __init__(self) -> None:
        self.info = SimpleNamespace(bot_user_id=BOT)
        self.log = structlog.get_logger("test")
        self.manager: CallManager | None = None
        self.seen_while_deciding: list[list] = []

    def is_ours(self, user_id: str) -> bool:
        return user_id == BOT

    async def authorize(self, actor, action, target=None, context=None) -> Decision:
        self.seen_while_deciding.append(list(self.manager.book.active))
        return Decision.deny("calls only over Wi-Fi", "wifi-only")


class Context:
    """The event's context: records what the manager sends through it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.log = structlog.get_logger("test")

    async def send(self, room_id, content, event_type="m.room.message", *, as_user=None) -> str:
        self.sent.append((event_type, content))
        return f"$sent{len(self.sent)}"


def an_invite(call_id: str) -> MatrixEvent:
    content = {
        "call_id": call_id,
        "party_id": "ANNDEV",
        "version": "1",
        "offer": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"},
        "lifetime": 60_000,
        "invitee": BOT,
    }
    event = {"type": "m.call.invite", "room_id": ROOM, "sender": "@ann:localhost"}
    return MatrixEvent({**event, "event_id": f"${call_id}", "content": content})


async def test_the_policy_is_asked_before_the_call_is_taken_never_told_to_undo_it():
    host = PolicyHost()
    settings = {**DEFAULTS, "ice_addresses": ["127.0.0.1"], "homeserver_turn": False}
    manager = host.manager = CallManager(host, settings, dict(MODES))

    async def route(room_id, invitee, caller):
        return Route(BOT, "echo")

    manager.router.route = route
    ctx = Context()
    await manager.on_call_event(an_invite("c1"), ctx)
    assert host.seen_while_deciding == [[]]  # the book held no call while the policy decided
    assert [kind for kind, _ in ctx.sent] == ["m.call.reject", "m.room.message"]
    assert "calls only over Wi-Fi" in ctx.sent[1][1]["body"]
    assert manager.book.active == [] and manager.live == {}
    # the same invite again (delivered twice) is neither asked about nor refused again
    await manager.on_call_event(an_invite("c1"), ctx)
    assert len(host.seen_while_deciding) == 1 and len(ctx.sent) == 2
