"""Small parts of the calls plugin on their own: settings, ICE servers and addresses,
SDP helpers, audio helpers, the mixer and the call-mode hook."""

from __future__ import annotations

import asyncio
import re
from array import array
from pathlib import Path
from types import SimpleNamespace

import aioice.ice
import pytest
from calls_peer import dominant_frequency  # noqa: I001

from anywhere.bridge import hookimpl
from anywhere.bridge.errors import ConfigError, PluginLoadError
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.plugins.calls import plugin as calls_plugin
from anywhere.plugins.calls.audio import (
    FRAME_SAMPLES,
    decode_audio,
    encode_ogg_opus,
    tone,
    waveform,
)
from anywhere.plugins.calls.ice import IceServers, limit_gathering
from anywhere.plugins.calls.mixer import Conference
from anywhere.plugins.calls.modes import MODES, CallMode
from anywhere.plugins.calls.plugin import collect_modes
from anywhere.plugins.calls.sdp import (
    candidates_in_sdp,
    offer_problem,
    stream_ids,
    usermedia_metadata,
    without_candidates,
)
from anywhere.plugins.calls.settings import DEFAULTS, validate

SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
    "a=mid:0\r\na=msid:stream-1 track-1\r\na=sendrecv\r\n"
)


def settings(**changes):
    return {**DEFAULTS, **changes}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"ice_addresses": ["eth0"]}, "calls.ice_addresses[0]"),
        ({"ice_addresses": "127.0.0.1"}, "calls.ice_addresses"),
        ({"ice_servers": [{"urls": ["http://x"]}]}, "calls.ice_servers[0].urls"),
        ({"max_calls": 0}, "calls.max_calls"),
        ({"memo_max_seconds": "long"}, "calls.memo_max_seconds"),
        ({"homeserver_turn": "yes"}, "calls.homeserver_turn"),
        ({"max_calls_per_person": 0}, "calls.max_calls_per_person"),
        ({"max_call_seconds": -1}, "calls.max_call_seconds"),
        ({"echo_max_seconds": True}, "calls.echo_max_seconds"),
    ],
)
def test_a_wrong_setting_names_its_key(changes, key):
    with pytest.raises(ConfigError) as caught:
        validate(settings(**changes), "calls")
    assert caught.value.key == key


def test_the_defaults_and_a_turn_server_given_as_one_url_are_accepted():
    section = settings(ice_servers=[{"urls": "turn:turn.example.org:3478", "username": "u"}])
    validate(section, "calls")
    assert section["ice_servers"][0]["urls"] == ["turn:turn.example.org:3478"]


def test_ice_gathering_is_limited_to_the_configured_addresses_and_restored():
    original = aioice.ice.get_host_addresses
    try:
        limit_gathering(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        limit_gathering([])
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    finally:
        limit_gathering(["127.0.0.1"])  # what the rest of this session uses
    assert original is not None


async def test_the_homeserver_turn_server_is_used_and_refreshed_by_its_ttl():
    answers = [
        {"uris": ["turn:turn.example.org:3478"], "username": "u1", "password": "p1", "ttl": 100},
        {"uris": ["turn:turn.example.org:3478"], "username": "u2", "password": "p2", "ttl": 100},
    ]
    calls = []
    now = [0.0]

    async def fetch():
        calls.append(1)
        return answers[len(calls) - 1]

    servers = IceServers([{"urls": ["stun:stun.example.org"]}], fetch, clock=lambda: now[0])
    config = await servers.configuration()
    assert [s.urls for s in config.iceServers] == [["stun:stun.example.org"], answers[0]["uris"]]
    assert config.iceServers[1].username == "u1"
    now[0] = 50  # within 90% of the ttl: cached
    assert (await servers.configuration()).iceServers[1].username == "u1"
    now[0] = 95  # close to expiry: asked again
    assert (await servers.configuration()).iceServers[1].credential == "p2"
    assert len(calls) == 2


async def test_a_homeserver_without_turn_gives_no_turn_server():
    async def fetch():
        return {}

    assert (await IceServers([], fetch).configuration()).iceServers == []


def test_sdp_helpers_find_candidates_streams_and_strip_candidates():
    [candidate] = candidates_in_sdp(SDP)
    assert (candidate.sdp_mid, candidate.sdp_mline_index) == ("0", 0)
    assert candidate.candidate.startswith("candidate:abc")
    assert stream_ids(SDP) == ["stream-1"]
    assert usermedia_metadata(SDP)["stream-1"]["purpose"] == "m.usermedia"
    stripped = without_candidates(SDP)
    assert "a=candidate" not in stripped and "end-of-candidates" not in stripped
    assert "a=mid:0" in stripped


def test_a_voice_memo_file_round_trips_with_its_tone_and_a_waveform():
    samples = tone(523, 48_000)
    decoded = decode_audio(encode_ogg_opus(samples))
    assert abs(len(decoded) - len(samples)) < 2 * FRAME_SAMPLES
    assert dominant_frequency(decoded[4800:]) == pytest.approx(523, abs=10)
    shape = waveform(samples[:24_000] + tone(523, 24_000, amplitude=0.05))
    assert shape[10] > 900 and shape[90] < 300


def test_the_mixer_gives_everyone_the_others_and_not_themselves():
    conference = Conference("!room:example.org", clock=False)  # ticked by hand
    people = {k: conference.join(k, f"@{k}:example.org") for k in ("a", "b", "c")}
    for value, person in zip((100, 20, 3), people.values(), strict=True):
        person.inbound.feed(array("h", [value] * FRAME_SAMPLES))
    conference.mix_once()
    heard = {k: p.outbound.queue.get_nowait()[0] for k, p in people.items()}
    assert heard == {"a": 23, "b": 103, "c": 120}


def test_the_mixer_clips_instead_of_wrapping_around():
    conference = Conference("!room:example.org", clock=False)
    people = [conference.join(k, k) for k in "abc"]
    for person in people:
        person.inbound.feed(array("h", [30_000] * FRAME_SAMPLES))
    conference.mix_once()
    assert people[0].outbound.queue.get_nowait()[0] == 32_767


class Parrot(CallMode):
    name = "parrot"


def test_other_plugins_add_call_modes_through_the_hook():
    class ModePlugin:
        @hookimpl
        def anywhere_call_modes(self):
            return {"parrot": Parrot}

    manager = PluginManager()
    manager.register(ModePlugin(), "parrot_plugin")
    manager.register(calls_plugin, "calls")
    modes = collect_modes(manager)
    assert modes["parrot"] is Parrot and set(MODES) <= set(modes)


def test_a_call_mode_name_taken_twice_stops_start_up_naming_both_plugins():
    class Clash:
        @hookimpl
        def anywhere_call_modes(self):
            return {"echo": Parrot}

    manager = PluginManager()
    manager.register(Clash(), "clash")
    with pytest.raises(PluginLoadError, match="'clash' gives the call mode 'echo'.*'calls'"):
        collect_modes(manager)


def test_the_mode_example_in_docs_calls_md_runs():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "calls.md").read_text("utf-8")
    [example] = re.findall(r"```python\n(.*?)```", docs, re.S)
    namespace: dict = {}
    exec(compile(example, "docs/calls.md", "exec"), namespace)

    class ExamplePlugin:
        anywhere_calls_modes = staticmethod(namespace["anywhere_calls_modes"])

    manager = PluginManager()
    manager.register(ExamplePlugin(), "parrot_example")
    parrot_class = collect_modes(manager)["parrot"]
    live = SimpleNamespace(call=None)
    parrot = parrot_class(SimpleNamespace(settings=DEFAULTS), live)
    parrot.on_audio(array("h", [1000] * FRAME_SAMPLES))
    assert len(parrot.fifo) == 96_000 + FRAME_SAMPLES  # two seconds of silence, then it


async def test_the_statistics_are_read_after_the_other_side_closed_the_connection():
    """A browser hanging up closes its peer connection before the hang-up event arrives;
    aiortc then closes ours, and the quality report must still count every packet."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from anywhere.plugins.calls.session import MediaSession
    from anywhere.plugins.calls.tracks import PacedTrack

    states: list[str] = []
    ours = MediaSession(
        RTCConfiguration(iceServers=[]),
        PacedTrack(lambda: tone(440, FRAME_SAMPLES)),
        lambda track: None,
        states.append,
    )
    caller = RTCPeerConnection()
    caller.addTrack(PacedTrack(lambda: tone(660, FRAME_SAMPLES)))
    received = asyncio.Event()

    def on_track(track):
        async def read():
            for _ in range(25):  # half a second of the bot's audio
                await track.recv()
            received.set()

        asyncio.ensure_future(read())

    caller.on("track", on_track)
    await caller.setLocalDescription(await caller.createOffer())
    answer = await ours.answer(caller.localDescription.sdp)
    await caller.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(received.wait(), 30)
    await caller.close()  # the caller hangs up: DTLS close, then our side closes
    while "closed" not in states:
        await asyncio.sleep(0.02)
    quality = await ours.measure()
    caller_sent = next(
        s.packetsSent for s in (await caller.getStats()).values() if s.type == "outbound-rtp"
    )
    assert quality.packets_received > 0 and quality.packets_sent >= 25
    assert abs(quality.packets_received - caller_sent) <= 2
    await ours.close()


async def test_turn_credentials_never_reach_what_callers_are_sent():
    """The homeserver's TURN credentials are used by the bridge's own peer connection;
    what the bridge sends a caller (the answer's SDP and the candidates taken from it)
    holds no trace of them. The TURN server here is unreachable: gathering gives up on
    it after a few seconds."""
    from aiortc import RTCPeerConnection

    from anywhere.plugins.calls.session import MediaSession
    from anywhere.plugins.calls.tracks import PacedTrack

    secret = {"username": "1798000000:@anywhere:localhost", "password": "s3cret-turn-pass"}

    async def fetch():
        return {"uris": ["turn:127.0.0.1:9?transport=udp"], "ttl": 86400, **secret}

    configuration = await IceServers([], fetch).configuration()
    assert configuration.iceServers[0].credential == secret["password"]
    session = MediaSession(
        configuration, PacedTrack(lambda: tone(440, FRAME_SAMPLES)), lambda t: None, lambda s: None
    )
    caller = RTCPeerConnection()
    caller.addTransceiver("audio")
    await caller.setLocalDescription(await caller.createOffer())
    answer = await session.answer(caller.localDescription.sdp)
    sent = [answer, *(str(c.to_content()) for c in candidates_in_sdp(answer))]
    for text in sent:
        assert secret["password"] not in text and secret["username"] not in text
        assert "1798000000" not in text
    await caller.close()
    await session.close()


def test_a_renegotiation_offer_must_keep_the_calls_audio_line():
    from types import SimpleNamespace

    current = SimpleNamespace(sdp=SDP)
    assert offer_problem(SDP, current) is None
    video_added = SDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
    assert offer_problem(video_added, current) is None  # lines may be added
    assert "no audio line" in offer_problem("v=0\r\ngarbage\r\n", current)
    video_only = SDP.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96")
    assert "no audio line" in offer_problem(video_only, current)
    swapped = video_added.replace("m=audio", "m=TMP").replace("m=video", "m=audio")
    assert "do not keep" in offer_problem(swapped.replace("m=TMP", "m=video"), current)
