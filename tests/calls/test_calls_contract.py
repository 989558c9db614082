"""The calls plugin on the plugin contract (issue 15): its extension hook declared by
itself (plugins/calls/hookspecs.py), the old name still read with a warning, call
modes given a :class:`CallHost` — what a mode may use — instead of the whole manager,
and other plugins' modes answering the calls ``bot_modes`` gives them."""

from __future__ import annotations

import inspect
from array import array
from types import SimpleNamespace

import pytest
import structlog
from calls_peer import CallPeer, dominant_frequency
from tone_mode_plugin import TONE_HZ

from anywhere.bridge import Decision, MatrixEvent, hookimpl
from anywhere.bridge.errors import ConfigError
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.plugins.calls import plugin as calls_plugin
from anywhere.plugins.calls.audio import FRAME_SAMPLES, SAMPLE_RATE, rms
from anywhere.plugins.calls.host import CallHost
from anywhere.plugins.calls.manager import CallManager
from anywhere.plugins.calls.mixer import Conference
from anywhere.plugins.calls.modes import MODES, CallMode, ConferenceCall, VoiceMemo
from anywhere.plugins.calls.plugin import collect_modes
from anywhere.plugins.calls.routing import BotModes
from anywhere.plugins.calls.settings import DEFAULTS, validate
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


# ----- a mode given by another plugin gets the calls bot_modes sends it -----


def test_bot_modes_picks_the_first_matching_rule_then_echo():
    modes = BotModes(
        [
            {"room": "!hotline:localhost", "mode": "parrot"},
            {"caller": "@ann:*", "mode": "memo"},
            {"room": "!quiet:localhost", "caller": "@bob:localhost", "mode": "tone"},
        ]
    )
    assert modes.choose("!hotline:localhost", "@ann:localhost") == "parrot"  # the room first
    assert modes.choose("!elsewhere:localhost", "@ann:localhost") == "memo"
    assert modes.choose("!quiet:localhost", "@bob:localhost") == "tone"  # both must match
    assert modes.choose("!quiet:localhost", "@carl:localhost") == "echo"
    assert modes.choose("!elsewhere:localhost", "@bob:localhost") == "echo"


@pytest.mark.parametrize(
    ("rules", "where", "message"),
    [
        ({"mode": "echo"}, "bot_modes", "a list of rules"),
        ([{"room": "!a:b"}], r"bot_modes\[0\].mode", "the name of a call mode"),
        ([{"mode": "echo", "user": "@a:b"}], r"bot_modes\[0\].user", "one of room, caller"),
        ([{"mode": "echo", "room": "lobby"}], r"bot_modes\[0\].room", "a room ID"),
        ([{"mode": "echo"}, {"mode": "x", "caller": "ann"}], r"bot_modes\[1\].caller", "a user ID"),
    ],
)
def test_a_malformed_bot_modes_rule_is_refused_naming_it(rules, where, message):
    with pytest.raises(ConfigError, match=rf"^calls\.{where}: expected {message}"):
        validate({**DEFAULTS, "bot_modes": rules}, "calls")


def test_a_bot_modes_rule_naming_an_unknown_mode_stops_start_up_naming_the_known_ones():
    host = PolicyHost()
    settings = {**DEFAULTS, "homeserver_turn": False, "bot_modes": [{"mode": "parot"}]}
    modes = {**MODES, "parrot": Parrot}
    with pytest.raises(ConfigError) as caught:
        CallManager(host, settings, modes)
    assert str(caught.value) == (
        "plugins.settings.calls.bot_modes[0].mode: expected one of echo, memo, parrot, "
        "found 'parot' — enable the plugin that gives it, or check its spelling"
    )
    settings["bot_modes"] = [{"mode": "conference"}]
    with pytest.raises(ConfigError, match="own conference user"):
        CallManager(host, settings, modes)
    settings["bot_modes"] = [{"mode": "parrot"}]
    assert CallManager(host, settings, modes).router.bot_modes.choose(ROOM, "@a:b") == "parrot"


@pytest.mark.e2e
async def test_another_plugins_mode_answers_the_bots_calls_bot_modes_gives_it(person, calls_bot):
    """``bot_modes`` (tests/calls/conftest.py) sends @tonecaller's calls to the bot to the
    ``tone`` mode of another plugin (tone_mode_plugin.py): the caller hears its 660 Hz
    tone, not the echo of their own 440 Hz, and sees what the mode said through its host
    and its call. Anybody else calling the bot still gets the echo test."""
    caller = await person("tonecaller")
    room = await caller.dm(calls_bot)
    call = CallPeer(caller, room, tone_hz=440)
    await call.place(invitee=calls_bot)
    await call.wait_for(lambda e: e["type"] == "m.call.answer")
    await call.wait_connected()
    answered = f"Tone mode answered {caller.user_id}."
    await call.wait_for_room(lambda e: e["content"].get("body") == answered)
    heard = await call.hear(1.5)
    assert rms(heard) > 500, "the tone mode's track is silent"
    assert dominant_frequency(heard) == pytest.approx(TONE_HZ, abs=10)
    await call.hang_up()
    report = await caller.wait_for_notice(room, calls_bot, "Tone mode heard")
    seconds = float(report["content"]["body"].split()[3])
    assert seconds >= 1.0, "the mode did not hear the caller's tone"
    # someone else calling the bot gets the echo test, as before
    other = await person()
    room = await other.dm(calls_bot)
    call = CallPeer(other, room, tone_hz=440)
    await call.place(invitee=calls_bot)
    await call.wait_connected()
    await call.hear(1.0)  # the greeting tone
    assert dominant_frequency(await call.hear(1.0)) == pytest.approx(440, abs=10)
    await call.hang_up()
