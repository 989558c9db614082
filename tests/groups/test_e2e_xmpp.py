"""XMPP end to end: a real Prosody (its own config, loopback), a real Synapse, the bridge
as a process with the XMPP component, slixmpp clients and matrix-nio clients as people."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from nio import RoomGetStateEventResponse

pytestmark = pytest.mark.e2e

ROOM_SEQ = iter(range(1, 1000))


async def ask(user, room, bot_id, text, expect):
    mark = user.mark(room)
    await user.send_text(room, text)
    reply = await user.wait_for_notice(room, bot_id, expect, start=mark)
    return reply["content"]["body"]


async def wait_invited(user, room_id=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        if room_id in user.invites or (room_id is None and user.invites):
            return room_id or next(iter(user.invites))
        assert time.monotonic() < deadline, f"{user.user_id} got no invite"
        await user.sync_once()


async def displayname(user, room_id, user_id):
    response = await user.client.room_get_state_event(room_id, "m.room.member", user_id)
    assert isinstance(response, RoomGetStateEventResponse), response
    return response.content.get("displayname")


def text_from(sender=None, body=None):
    def match(event):
        content = event.get("content", {})
        return (
            event.get("type") == "m.room.message"
            and (sender is None or event.get("sender") == sender)
            and (body is None or content.get("body") == body)
        )

    return match


def bodies(user, room_id, body):
    return [
        e
        for e in user.timeline.get(room_id, [])
        if e.get("type") == "m.room.message" and e.get("content", {}).get("body") == body
    ]


async def linked_group(stack, boss, xmpp_people_and_nicks, prosody):
    """A Matrix group linked to a fresh MUC the XMPP people are in; the boss has joined."""
    room = f"decision{next(ROOM_SEQ)}@{prosody.muc}"
    for person, nick in xmpp_people_and_nicks:
        await person.join(room, nick)
    bot = stack.bot_id
    dm = await boss.dm(bot)
    body = await ask(boss, dm, bot, f"!group create Ops-{room.split('@')[0]}", "Created")
    room_id = next(w for w in body.split() if w.startswith("!")).rstrip(".:,")
    await wait_invited(boss, room_id)
    await boss.client.join(room_id)
    await boss.wait_joined(room_id, boss.user_id)
    marks = [len(person.presences) for person, _ in xmpp_people_and_nicks]
    reply = await ask(boss, room_id, bot, f"!group link xmpp:{room}", "Linked")
    assert f"xmpp:{room}" in reply
    for (person, _), mark in zip(xmpp_people_and_nicks, marks, strict=True):
        # the room has the bridge's relay as an occupant (and told everyone)
        await wait_presence(person, relay_joined(room), start=mark)
    return room, room_id


def relay_joined(room, joined=True):
    def match(presence):
        return presence["from"].full == f"{room}/Matrix" and (
            (presence["type"] != "unavailable") == joined
        )

    return match


async def test_a_muc_and_a_portal_carry_text_both_ways_with_names_and_no_echo(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    alice = await xmpp_person("alice")
    boss = await matrix_person("boss1", "Boss Kim")
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice X")], prosody)

    mark = alice.mark()
    alice.send(room, "hello from xmpp", "groupchat")
    event = await boss.wait_for(room_id, text_from(body="hello from xmpp"))
    ghost = event["sender"]
    assert ghost.startswith("@anywhere_xmpp_") and ghost != boss.user_id
    assert await displayname(boss, room_id, ghost) == "Alice X (XMPP)"  # marked

    await boss.send_text(room_id, "hello from matrix")
    got = await alice.wait_for(lambda m: m["body"] == "hello from matrix", start=mark)
    assert got["type"] == "groupchat"
    assert got["from"].full == f"{room}/Boss Kim"

    # later markers each way: an echo of either message would have come before them
    alice.send(room, "marker from xmpp", "groupchat")
    await boss.wait_for(room_id, text_from(body="marker from xmpp"))
    await boss.send_text(room_id, "marker from matrix")
    await alice.wait_for(lambda m: m["body"] == "marker from matrix", start=mark)
    assert len(bodies(boss, room_id, "hello from xmpp")) == 1
    assert [e["sender"] for e in bodies(boss, room_id, "hello from matrix")] == [boss.user_id]
    from_alice = [m for m in alice.messages[mark:] if m["body"] == "hello from xmpp"]
    assert len(from_alice) == 1  # the room's own reflection, nothing from the bridge
    assert len([m for m in alice.messages[mark:] if m["body"] == "hello from matrix"]) == 1


async def test_one_to_one_chats_work_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    bob = await xmpp_person("bob")
    dana = await matrix_person("dana1", "Dana Lee")
    dana_jid = f"dana1=3alocalhost@{prosody.component}"
    bob.send(dana_jid, "are you there?", "chat")
    room_id = await wait_invited(dana)
    await dana.client.join(room_id)
    event = await dana.wait_for(room_id, text_from(body="are you there?"))
    assert await displayname(dana, room_id, event["sender"]) == "bob (XMPP)"

    mark = bob.mark()
    await dana.send_text(room_id, "yes, here")
    got = await bob.wait_for(lambda m: m["body"] == "yes, here", start=mark)
    assert got["from"].bare == dana_jid and got["type"] == "chat"


def xml(ns, name, **attrs):
    import xml.etree.ElementTree as ET

    return ET.Element(f"{{{ns}}}{name}", attrs)


def child_of(msg, ns, name):
    return msg.xml.find(f"{{{ns}}}{name}")


async def test_edits_and_retractions_go_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    carol = await xmpp_person("carol")
    boss = await matrix_person("boss2", "Boss Park")
    room, room_id = await linked_group(xmpp_stack, boss, [(carol, "Carol")], prosody)

    # XMPP → Matrix: a correction becomes an m.replace of the bridged event, a retraction
    # a redaction of it
    first = carol.send(room, "meet at 9", "groupchat")
    original = await boss.wait_for(room_id, text_from(body="meet at 9"))
    correction = xml("urn:xmpp:message-correct:0", "replace", id=first)
    carol.send(room, "meet at 10", "groupchat", extra=[correction])
    edit = await boss.wait_for(
        room_id, lambda e: e.get("content", {}).get("m.new_content", {}).get("body") == "meet at 10"
    )
    assert edit["content"]["m.relates_to"] == {
        "rel_type": "m.replace",
        "event_id": original["event_id"],
    }
    second = carol.send(room, "oops, wrong room", "groupchat")
    wrong = await boss.wait_for(room_id, text_from(body="oops, wrong room"))
    carol.send(
        room,
        "retracted",
        "groupchat",
        extra=[xml("urn:xmpp:message-retract:1", "retract", id=second)],
    )
    await boss.wait_for(
        room_id,
        lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == wrong["event_id"],
    )

    # Matrix → XMPP: an edit becomes a correction of the bridged message, a redaction a
    # retraction of it
    mark = carol.mark()
    sent = await boss.send_text(room_id, "budget is 5M")
    bridged = await carol.wait_for(lambda m: m["body"] == "budget is 5M", start=mark)
    await boss.client.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* budget is 6M",
            "m.new_content": {"msgtype": "m.text", "body": "budget is 6M"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent},
        },
    )
    corrected = await carol.wait_for(lambda m: m["body"] == "budget is 6M", start=mark)
    replace = child_of(corrected, "urn:xmpp:message-correct:0", "replace")
    assert replace is not None and replace.get("id") == bridged["id"]
    await boss.client.room_redact(room_id, sent)
    retraction = await carol.wait_for(
        lambda m: child_of(m, "urn:xmpp:message-retract:1", "retract") is not None, start=mark
    )
    assert child_of(retraction, "urn:xmpp:message-retract:1", "retract").get("id") == bridged["id"]


async def test_locations_go_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    dave = await xmpp_person("dave")
    boss = await matrix_person("boss3", "Boss Choi")
    room, room_id = await linked_group(xmpp_stack, boss, [(dave, "Dave")], prosody)
    geo = xml("http://jabber.org/protocol/geoloc", "geoloc")
    for name, value in (("lat", "37.5665"), ("lon", "126.978"), ("text", "City Hall")):
        item = xml("http://jabber.org/protocol/geoloc", name)
        item.text = value
        geo.append(item)
    dave.send(room, "I am at City Hall", "groupchat", extra=[geo])
    event = await boss.wait_for(
        room_id, lambda e: e.get("content", {}).get("msgtype") == "m.location"
    )
    assert event["content"]["geo_uri"] == "geo:37.566500,126.978000"
    assert event["content"]["body"] == "City Hall"

    mark = dave.mark()
    await boss.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.location", "body": "Office", "geo_uri": "geo:35.1796,129.0756"},
    )
    got = await dave.wait_for(
        lambda m: child_of(m, "http://jabber.org/protocol/geoloc", "geoloc") is not None,
        start=mark,
    )
    loc = child_of(got, "http://jabber.org/protocol/geoloc", "geoloc")
    lat = loc.find("{http://jabber.org/protocol/geoloc}lat").text
    assert float(lat) == pytest.approx(35.1796)
    assert "geo:35.179600,129.075600" in got["body"]


def count(person, body, start=0):
    return len([m for m in person.messages[start:] if m["body"] == body])


def xmpp_bodies(person, pattern, start=0):
    """What ``person`` received whose body matches ``pattern``, in order."""
    return [m["body"] for m in person.messages[start:] if re.fullmatch(pattern, m["body"])]


def matrix_bodies(user, room_id, pattern):
    return [
        e["content"]["body"]
        for e in user.timeline.get(room_id, [])
        if e.get("type") == "m.room.message"
        and isinstance(e.get("content", {}).get("body"), str)
        and re.fullmatch(pattern, e["content"]["body"])
    ]


async def markers_both_ways(boss, room_id, person, room, mark, tag):
    """A later message each way, waited for: anything sent before it has arrived."""
    person.send(room, f"{tag} marker from xmpp", "groupchat")
    await boss.wait_for(room_id, text_from(body=f"{tag} marker from xmpp"), timeout=60)
    await boss.send_text(room_id, f"{tag} marker from matrix")
    await person.wait_for(
        lambda m: m["body"] == f"{tag} marker from matrix", start=mark, timeout=60
    )


async def test_a_bridge_sigkill_loses_and_doubles_nothing(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    """30 messages each way at 5 a second, the bridge SIGKILLed twice while they flow;
    Prosody keeps its default history (20): the archive fills the gaps."""
    erin = await xmpp_person("erin")
    boss = await matrix_person("boss4", "Boss Han")
    room, room_id = await linked_group(xmpp_stack, boss, [(erin, "Erin")], prosody)
    mark = erin.mark()
    await boss.send_text(room_id, "before the crash")
    await erin.wait_for(lambda m: m["body"] == "before the crash", start=mark)

    kill_at = {10: asyncio.Event(), 20: asyncio.Event()}
    sent = {"matrix": 0}
    flowing = asyncio.Event()  # cleared while Synapse's recoverer hands the bridge back
    flowing.set()

    async def from_matrix():
        for i in range(30):
            await flowing.wait()
            await boss.send_text(room_id, f"sk-m{i}")
            sent["matrix"] = i + 1
            if i in kill_at:
                kill_at[i].set()
            await asyncio.sleep(0.2)  # the pace of the flow, not a wait for anything

    async def from_xmpp():
        for i in range(30):
            erin.send(room, f"sk-x{i}", "groupchat")
            await asyncio.sleep(0.2)

    async def crashes():
        for i in sorted(kill_at):
            await kill_at[i].wait()
            await asyncio.to_thread(xmpp_stack.bridge.kill)
            # Matrix messages go on while the bridge is down (the homeserver queues them)
            # until the homeserver has marked the bridge down; then the bridge starts and
            # the Matrix side waits until the homeserver has marked it up again (see
            # Stack.homeserver_marks_bridge: a homeserver race, not what this test is about).
            queued_from = sent["matrix"]
            await xmpp_stack.homeserver_marks_bridge("down")
            while sent["matrix"] < queued_from + 2:
                await asyncio.sleep(0.05)
            flowing.clear()
            await asyncio.to_thread(xmpp_stack.bridge.start)
            await xmpp_stack.homeserver_marks_bridge("up")
            flowing.set()

    await asyncio.gather(from_matrix(), from_xmpp(), crashes())
    await erin.wait_for(lambda m: m["body"] == "sk-m29", start=mark, timeout=90)
    await boss.wait_for(room_id, text_from(body="sk-x29"), timeout=90)
    await markers_both_ways(boss, room_id, erin, room, mark, "sk")
    assert xmpp_bodies(erin, r"sk-m\d+", mark) == [f"sk-m{i}" for i in range(30)]
    assert matrix_bodies(boss, room_id, r"sk-x\d+") == [f"sk-x{i}" for i in range(30)]
    assert count(erin, "before the crash", mark) == 1
    assert len(bodies(boss, room_id, "before the crash")) == 1


async def test_a_prosody_restart_mid_conversation_delivers_everything_once(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    """24 Matrix messages queued while Prosody is down, 25 XMPP messages as soon as it is
    back: everything arrives once, in order, each way."""
    frank = await xmpp_person("frank")
    boss = await matrix_person("boss5", "Boss Yoon")
    room, room_id = await linked_group(xmpp_stack, boss, [(frank, "Frank")], prosody)
    frank.send(room, "xmpp before restart", "groupchat")
    await boss.wait_for(room_id, text_from(body="xmpp before restart"))
    await boss.send_text(room_id, "matrix before restart")
    await frank.wait_for(lambda m: m["body"] == "matrix before restart")

    await asyncio.to_thread(prosody.stop)
    for i in range(24):
        await boss.send_text(room_id, f"pr-m{i}")
    await asyncio.to_thread(prosody.start)

    frank = await xmpp_person("frank")  # the client logs in again
    await frank.join(room, "Frank")
    for i in range(25):
        frank.send(room, f"pr-x{i}", "groupchat")
    await frank.wait_for(lambda m: m["body"] == "pr-m23", timeout=90)
    await boss.wait_for(room_id, text_from(body="pr-x24"), timeout=90)
    await markers_both_ways(boss, room_id, frank, room, 0, "pr")
    assert xmpp_bodies(frank, r"pr-m\d+") == [f"pr-m{i}" for i in range(24)]
    assert matrix_bodies(boss, room_id, r"pr-x\d+") == [f"pr-x{i}" for i in range(25)]
    assert len(bodies(boss, room_id, "xmpp before restart")) == 1
    # a normal reconnection leaves no half-stopped slixmpp tasks behind
    assert "Task was destroyed but it is pending" not in xmpp_stack.bridge.log_path.read_text()


async def test_a_room_that_said_more_than_its_history_while_the_bridge_was_down(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    """Deterministic: the room moves on past its history (20) before the bridge comes
    back with 24 queued Matrix messages; the bridge catches up from the archive before it
    sends them, so nothing is lost, doubled or reordered."""
    dave = await xmpp_person("dave")
    boss = await matrix_person("boss13", "Boss Seo")
    room, room_id = await linked_group(xmpp_stack, boss, [(dave, "Dave")], prosody)
    mark = dave.mark()
    await boss.send_text(room_id, "hd before")
    await dave.wait_for(lambda m: m["body"] == "hd before", start=mark)

    await asyncio.to_thread(xmpp_stack.bridge.kill)
    for i in range(25):
        dave.send(room, f"hd-x{i}", "groupchat")
    await dave.wait_for(lambda m: m["body"] == "hd-x24", start=mark)  # the room has them
    for i in range(24):
        await boss.send_text(room_id, f"hd-m{i}")
    await asyncio.to_thread(xmpp_stack.bridge.start)

    await dave.wait_for(lambda m: m["body"] == "hd-m23", start=mark, timeout=90)
    await boss.wait_for(room_id, text_from(body="hd-x24"), timeout=90)
    await markers_both_ways(boss, room_id, dave, room, mark, "hd")
    assert xmpp_bodies(dave, r"hd-m\d+", mark) == [f"hd-m{i}" for i in range(24)]
    assert matrix_bodies(boss, room_id, r"hd-x\d+") == [f"hd-x{i}" for i in range(25)]


PNG = (
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4b20000000049454e44ae426082"
    )
    + bytes(range(256)) * 40
)  # a valid PNG head, and enough bytes to notice a change


async def upload_from_xmpp(person, prosody, data, name, mimetype):
    """What an XMPP client does: ask the upload service for a slot, PUT, share the URL."""
    import aiohttp

    from anywhere.plugins.groups.xmpp.stanzas import NS_UPLOAD, read_slot

    request = xml(NS_UPLOAD, "request", filename=name, size=str(len(data)))
    request.set("content-type", mimetype)
    iq = person.client.make_iq_get(ito=prosody.upload)
    iq.append(request)
    result = await iq.send(timeout=15)
    put, get, headers = read_slot(result.xml)
    headers = headers | {"Content-Type": mimetype}
    async with aiohttp.ClientSession() as http, http.put(put, data=data, headers=headers) as r:
        assert r.status in (200, 201)
    return get


def share_link(person, room, url):
    """Share ``url`` in ``room`` as XMPP clients share a file: the link as the body and
    in an out-of-band data element (XEP-0066)."""
    oob = xml("jabber:x:oob", "x")
    link = xml("jabber:x:oob", "url")
    link.text = url
    oob.append(link)
    return person.send(room, url, "groupchat", extra=[oob])


async def test_an_image_arrives_byte_identical_each_way(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    import aiohttp

    alice = await xmpp_person("alice")
    boss = await matrix_person("boss6", "Boss Jang")
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice F")], prosody)

    url = await upload_from_xmpp(alice, prosody, PNG, "chart.png", "image/png")
    share_link(alice, room, url)
    event = await boss.wait_for(room_id, lambda e: e.get("content", {}).get("msgtype") == "m.image")
    assert await download(boss, event["content"]["url"]) == PNG
    assert event["content"]["info"]["mimetype"] == "image/png"

    mark = alice.mark()
    uploaded = await boss.client.upload(
        lambda *_: PNG, content_type="image/png", filename="plan.png", filesize=len(PNG)
    )
    content_uri = uploaded[0].content_uri
    await boss.client.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.image",
            "body": "plan.png",
            "url": content_uri,
            "info": {"mimetype": "image/png", "size": len(PNG)},
        },
    )
    got = await alice.wait_for(
        lambda m: (
            child_of(m, "jabber:x:oob", "x") is not None and m["from"].resource == "Boss Jang"
        ),
        start=mark,
    )
    file_url = child_of(got, "jabber:x:oob", "x").find("{jabber:x:oob}url").text
    async with aiohttp.ClientSession() as http, http.get(file_url) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG


def voice_memo(seconds: float = 1.0) -> bytes:
    """An Ogg Opus recording of a 440 Hz tone, as a phone's voice recorder makes."""
    import array
    import fractions
    import io
    import math

    import av

    rate = 48000
    count = int(rate * seconds)
    samples = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(count))
    )
    frame = av.AudioFrame(format="s16", layout="mono", samples=count)
    frame.planes[0].update(samples.tobytes())
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, fractions.Fraction(1, rate)
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


async def test_voice_memos_go_both_ways_as_playable_voice_messages(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    import aiohttp

    alice = await xmpp_person("alice")
    boss = await matrix_person("boss6v", "Boss Voice")
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice V")], prosody)
    memo = voice_memo(1.0)

    # XMPP → Matrix: what Conversations sends for a recording (an uploaded .ogg linked
    # with out-of-band data) arrives as a Matrix voice message with its length.
    url = await upload_from_xmpp(alice, prosody, memo, "2026-11-25_memo.ogg", "audio/ogg")
    share_link(alice, room, url)
    event = await boss.wait_for(room_id, lambda e: e.get("content", {}).get("msgtype") == "m.audio")
    content = event["content"]
    assert "org.matrix.msc3245.voice" in content
    assert content["info"]["mimetype"] == "audio/ogg"
    assert 900 <= content["info"]["duration"] <= 1100
    assert content["org.matrix.msc1767.audio"]["duration"] == content["info"]["duration"]
    assert await download(boss, content["url"]) == memo

    # Matrix → XMPP: Element's voice message (body "Voice message", no file name)
    # reaches XMPP as a link to the same bytes, named so that a phone plays it.
    mark = alice.mark()
    uploaded = await boss.client.upload(
        lambda *_: memo, content_type="audio/ogg", filename="Voice message", filesize=len(memo)
    )
    await boss.client.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.audio",
            "body": "Voice message",
            "url": uploaded[0].content_uri,
            "info": {"mimetype": "audio/ogg", "size": len(memo), "duration": 1000},
            "org.matrix.msc1767.audio": {"duration": 1000, "waveform": [0, 512, 1024]},
            "org.matrix.msc3245.voice": {},
        },
    )
    got = await alice.wait_for(
        lambda m: (
            child_of(m, "jabber:x:oob", "x") is not None and m["from"].resource == "Boss Voice"
        ),
        start=mark,
    )
    file_url = child_of(got, "jabber:x:oob", "x").find("{jabber:x:oob}url").text
    assert file_url.endswith(".ogg"), file_url
    async with aiohttp.ClientSession() as http, http.get(file_url) as resp:
        assert resp.status == 200
        assert resp.content_type == "audio/ogg"
        assert await resp.read() == memo


async def test_hostile_input_is_refused_or_cleaned_and_the_bridge_keeps_going(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    bob = await xmpp_person("bob")
    boss = await matrix_person("boss7", "Bob B")  # the same name as an XMPP occupant
    room, room_id = await linked_group(xmpp_stack, boss, [(bob, "Bob B")], prosody)
    bot = xmpp_stack.bot_id

    # characters XML cannot carry are dropped; a taken nickname is not impersonated
    mark = bob.mark()
    await boss.send_text(room_id, "bad\x07chars\x1bhere\ufffe")
    got = await bob.wait_for(lambda m: m["body"] == "badcharshere", start=mark)
    assert got["from"].resource == "Bob B [matrix]"

    # a Matrix message longer than the bridge relays gets a clear refusal
    refusal = await ask(boss, room_id, bot, "x" * 30000, "Not sent to xmpp")
    assert "30000 characters" in refusal

    # a long XMPP message arrives shortened, saying so
    bob.send(room, "y" * 100_000, "groupchat")
    event = await boss.wait_for(
        room_id, lambda e: "shortened by the bridge" in e.get("content", {}).get("body", "")
    )
    assert event["content"]["body"].startswith("y" * 20000 + "…")
    assert "100000 characters" in event["content"]["body"]

    # a spoofed room message sent straight to the relay, and a message to the address of
    # a Matrix user on another server, reach nobody
    bob.send(f"bridge@{prosody.component}/relay", "spoofed room message", "groupchat")
    bob.send(f"mallory=3aevil.example@{prosody.component}", "hello mallory", "chat")

    # a 50 MB body: the XMPP server cuts that client off; the bridge never sees it whole
    big = await xmpp_person("carol")
    await big.join(room, "Carol Big")
    cut_off = asyncio.get_running_loop().create_future()
    big.client.add_event_handler(
        "disconnected", lambda _: cut_off.done() or cut_off.set_result(True)
    )
    big.send(room, "z" * 50_000_000, "groupchat")
    await asyncio.wait_for(cut_off, 60)  # the server has dealt with it

    bob.send(room, "still working", "groupchat")
    await boss.wait_for(room_id, text_from(body="still working"))
    await boss.sync_once()
    bodies_seen = [e.get("content", {}).get("body", "") for e in boss.timeline[room_id]]
    assert "spoofed room message" not in bodies_seen
    assert not any(body.startswith("zzzz") for body in bodies_seen)
    assert xmpp_stack.bridge.proc.poll() is None
    assert xmpp_stack.bridge.health()["ready"]


async def test_a_matrix_person_opens_a_chat_by_inviting_the_xmpp_persons_ghost(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    dave = await xmpp_person("dave")
    eve = await matrix_person("eve1", "Eve Seo")
    ghost = f"@anywhere_xmpp_dave=40{prosody.domain}:localhost"
    room_id = await eve.create_room([ghost], direct=True)
    await eve.wait_joined(room_id, ghost)
    mark = dave.mark()
    await eve.send_text(room_id, "hi Dave, from Matrix")
    got = await dave.wait_for(lambda m: m["body"] == "hi Dave, from Matrix", start=mark)
    assert got["from"].bare == f"eve1=3alocalhost@{prosody.component}"
    dave.send(got["from"].bare, "hi Eve, from XMPP", "chat")
    event = await eve.wait_for(room_id, text_from(body="hi Eve, from XMPP"))
    assert event["sender"] == ghost


async def test_replies_cross_both_ways_and_unlink_stops_the_bridge(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    carol = await xmpp_person("carol")
    boss = await matrix_person("boss8", "Boss Lim")
    room, room_id = await linked_group(xmpp_stack, boss, [(carol, "Carol R")], prosody)
    mark = carol.mark()
    question = await boss.send_text(room_id, "who takes the client call?")
    bridged = await carol.wait_for(lambda m: m["body"] == "who takes the client call?", start=mark)
    quote = "> Boss Lim:\n> who takes the client call?\n"
    fallback = xml("urn:xmpp:fallback:0", "fallback", **{"for": "urn:xmpp:reply:0"})
    fallback.append(xml("urn:xmpp:fallback:0", "body", start="0", end=str(len(quote))))
    carol.send(
        room,
        quote + "I will",
        "groupchat",
        extra=[xml("urn:xmpp:reply:0", "reply", id=bridged["id"]), fallback],
    )
    # the quote the XMPP client added (XEP-0461) is cut: Matrix shows the reply its way
    answer = await boss.wait_for(room_id, text_from(body="I will"))
    assert answer["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == question

    await boss.client.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "> <@x:localhost> I will\n\nthanks!",
            "m.relates_to": {"m.in_reply_to": {"event_id": answer["event_id"]}},
        },
    )
    thanks = await carol.wait_for(lambda m: m["body"] == "thanks!", start=mark)
    reply = child_of(thanks, "urn:xmpp:reply:0", "reply")
    assert reply is not None and reply.get("id") == answer_id(carol, quote + "I will")

    presences = len(carol.presences)
    body = await ask(boss, room_id, xmpp_stack.bot_id, "!group unlink", "Unlinked")
    assert f"xmpp:{room}" in body
    # the relay has left the room: the room no longer sends the bridge anything
    await wait_presence(carol, relay_joined(room, joined=False), start=presences)
    carol.send(room, "anyone still there?", "groupchat")
    await boss.send_text(room_id, "after unlink")
    # the bridge handles a room's events in order: once the command after it is
    # answered, "after unlink" has been handled (and nothing was queued for XMPP) ...
    await ask(boss, room_id, xmpp_stack.bot_id, "!group list", "groups")
    # ... and had it been queued for XMPP, it would go out before a later message (the
    # outbox sends in order): a marker through a still-linked room
    other_room, other_id = await linked_group(xmpp_stack, boss, [(carol, "Carol S")], prosody)
    mark2 = carol.mark()
    await boss.send_text(other_id, "marker after unlink")
    await carol.wait_for(lambda m: m["body"] == "marker after unlink", start=mark2)
    await boss.sync_once()
    assert not bodies(boss, room_id, "anyone still there?")
    assert not [m for m in carol.messages[mark:] if m["body"] == "after unlink"]


def answer_id(person, body):
    """The id of the person's own message, as the room reflected it to them."""
    return next(m["id"] for m in person.messages if m["body"] == body)


async def test_xmpp_joins_nickname_changes_and_leaves_show_in_matrix(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    erin = await xmpp_person("erin")
    boss = await matrix_person("boss9", "Boss Moon")
    room, room_id = await linked_group(xmpp_stack, boss, [], prosody)

    def membership_of(name, membership):
        return lambda e: (
            e.get("type") == "m.room.member"
            and e.get("content", {}).get("membership") == membership
            and e.get("content", {}).get("displayname") == name
        )

    await erin.join(room, "Erin J")
    joined = await boss.wait_for(room_id, membership_of("Erin J (XMPP)", "join"))
    ghost = joined["state_key"]
    assert ghost.startswith("@anywhere_xmpp_")

    erin.client.make_presence(pto=f"{room}/Erin Jung").send()
    renamed = await boss.wait_for(room_id, membership_of("Erin Jung (XMPP)", "join"))
    assert renamed["state_key"] == ghost  # the same person, a new name

    erin.client.make_presence(pto=f"{room}/Erin Jung", ptype="unavailable").send()
    await boss.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == ghost
            and e.get("content", {}).get("membership") == "leave"
        ),
    )


async def test_posting_into_a_bridged_group_asks_the_policy_and_a_refusal_says_why(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    dave = await xmpp_person("dave")
    boss = await matrix_person("boss10", "Boss Ko")
    room, room_id = await linked_group(xmpp_stack, boss, [(dave, "Dave P")], prosody)
    newcomer = await matrix_person("unverified2", "New Person")
    await ask(boss, room_id, xmpp_stack.bot_id, f"!group add {newcomer.user_id}", "Invited")
    await wait_invited(newcomer, room_id)
    await newcomer.client.join(room_id)
    await newcomer.wait_joined(room_id, newcomer.user_id)
    mark = dave.mark()
    refusal = await ask(newcomer, room_id, xmpp_stack.bot_id, "hello xmpp?", "Not sent to xmpp")
    assert "verif" in refusal
    await boss.send_text(room_id, "a verified post")
    await dave.wait_for(lambda m: m["body"] == "a verified post", start=mark)
    assert not [m for m in dave.messages[mark:] if m["body"] == "hello xmpp?"]


async def download(user, mxc):
    import aiohttp

    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    url = f"{user.client.homeserver}/_matrix/client/v1/media/download/{server}/{media_id}"
    headers = {"Authorization": f"Bearer {user.client.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        return await resp.read()


async def publish_vcard_photo(person, data, mimetype="image/png"):
    """What an XMPP client does to set an avatar: a vCard with a PHOTO (XEP-0054)."""
    import base64
    import hashlib

    vcard = xml("vcard-temp", "vCard")
    photo = xml("vcard-temp", "PHOTO")
    kind, binval = xml("vcard-temp", "TYPE"), xml("vcard-temp", "BINVAL")
    kind.text, binval.text = mimetype, base64.b64encode(data).decode()
    photo.extend([kind, binval])
    vcard.append(photo)
    iq = person.client.make_iq_set()
    iq.append(vcard)
    await iq.send(timeout=15)
    return hashlib.sha1(data).hexdigest()


def announce_photo(person, room, nick, sha1, show=None):
    """...and announces it in its presence (XEP-0153)."""
    presence = person.client.make_presence(pto=f"{room}/{nick}", pshow=show)
    update, photo = xml("vcard-temp:x:update", "x"), xml("vcard-temp:x:update", "photo")
    photo.text = sha1
    update.append(photo)
    presence.append(update)
    presence.send()


async def test_an_xmpp_persons_vcard_photo_becomes_their_ghosts_avatar_once(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    alice = await xmpp_person("alice")
    boss = await matrix_person("boss11", "Boss Avatar")
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice V")], prosody)

    def ghost_avatar(not_url=None):
        return lambda e: (
            e.get("type") == "m.room.member"
            and e.get("content", {}).get("displayname") == "Alice V (XMPP)"
            and e.get("content", {}).get("avatar_url") not in (None, not_url)
        )

    sha1 = await publish_vcard_photo(alice, PNG)
    announce_photo(alice, room, "Alice V", sha1)
    member = await boss.wait_for(room_id, ghost_avatar())
    first = member["content"]["avatar_url"]
    assert await download(boss, first) == PNG

    # the same photo announced again (a status change): not uploaded or set again
    announce_photo(alice, room, "Alice V", sha1, show="away")
    alice.send(room, "back in a minute", "groupchat")
    await boss.wait_for(room_id, text_from(body="back in a minute"))
    await boss.sync_once()
    urls = [
        e["content"].get("avatar_url")
        for e in boss.timeline[room_id]
        if e.get("type") == "m.room.member" and e.get("state_key") == member["state_key"]
    ]
    assert set(urls) - {None} == {first}

    # a new photo replaces it
    newer = PNG + b"new picture"
    announce_photo(alice, room, "Alice V", await publish_vcard_photo(alice, newer))
    changed = await boss.wait_for(room_id, ghost_avatar(not_url=first))
    assert await download(boss, changed["content"]["avatar_url"]) == newer


async def set_matrix_avatar(user, data, mimetype="image/png"):
    uploaded = await user.client.upload(
        lambda *_: data, content_type=mimetype, filename="me.png", filesize=len(data)
    )
    await user.client.set_avatar(uploaded[0].content_uri)


def presence_photo(presence):
    update = child_of(presence, "vcard-temp:x:update", "x")
    photo = update.find("{vcard-temp:x:update}photo") if update is not None else None
    return None if photo is None else (photo.text or "")


async def wait_presence(person, predicate, start=0, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        for presence in person.presences[start:]:
            if predicate(presence):
                return presence
        assert time.monotonic() < deadline, "no such presence"
        await asyncio.sleep(0.05)


async def fetch_vcard(person, jid):
    """(name, photo bytes) of someone's vCard, asked the way XMPP clients ask."""
    import base64

    iq = person.client.make_iq_get(ito=jid)
    iq.append(xml("vcard-temp", "vCard"))
    result = await iq.send(timeout=15)
    card = child_of(result, "vcard-temp", "vCard")
    binval = card.find("{vcard-temp}PHOTO/{vcard-temp}BINVAL")
    photo = base64.b64decode(binval.text) if binval is not None else None
    return card.find("{vcard-temp}FN").text, photo


async def test_a_matrix_persons_avatar_shows_in_xmpp_rooms_and_chats(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    import hashlib

    from anywhere.plugins.groups.ghosts import escape

    alice = await xmpp_person("alice")
    boss = await matrix_person("boss12", "Boss Face")
    await set_matrix_avatar(boss, PNG)
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice A")], prosody)

    # posting brings the Matrix person into the room with their photo's hash (XEP-0153)
    start = len(alice.presences)
    await boss.send_text(room_id, "hello with a face")
    await alice.wait_for(lambda m: m["body"] == "hello with a face")
    occupant = f"{room}/Boss Face"
    await wait_presence(
        alice,
        lambda p: p["from"].full == occupant and presence_photo(p) == hashlib.sha1(PNG).hexdigest(),
        start,
    )
    # and their vCard, asked through the room, has the picture (XEP-0054)
    assert await fetch_vcard(alice, occupant) == ("Boss Face", PNG)

    # a new avatar: a presence with the new hash, and the new picture
    newer = PNG + b"a newer picture"
    start = len(alice.presences)
    await set_matrix_avatar(boss, newer)
    await wait_presence(
        alice,
        lambda p: (
            p["from"].full == occupant and presence_photo(p) == hashlib.sha1(newer).hexdigest()
        ),
        start,
    )
    assert await fetch_vcard(alice, occupant) == ("Boss Face", newer)

    # in a 1:1 chat, the contact's vCard (their bare address) shows the same
    dana = await matrix_person("dana12", "Dana Face")
    await set_matrix_avatar(dana, PNG)
    dana_jid = f"{escape(dana.user_id.removeprefix('@'))}@{prosody.component}"
    alice.send(dana_jid, "may I see your face?", "chat")
    dm = await wait_invited(dana)
    await dana.client.join(dm)
    await dana.wait_for(dm, text_from(body="may I see your face?"))
    assert await fetch_vcard(alice, dana_jid) == ("Dana Face", PNG)
    # someone the person does not chat with learns no more than the address
    assert (await fetch_vcard(alice, f"nobody=3alocalhost@{prosody.component}"))[1] is None


def reaction_keys(msg):
    el = child_of(msg, "urn:xmpp:reactions:0", "reactions")
    if el is None:
        return None
    return el.get("id"), [r.text for r in el.findall("{urn:xmpp:reactions:0}reaction")]


async def test_reactions_go_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    carol = await xmpp_person("carol")
    boss = await matrix_person("boss12", "Boss React")
    room, room_id = await linked_group(xmpp_stack, boss, [(carol, "Carol E")], prosody)

    # XMPP → Matrix: a reaction is an m.reaction annotation of the bridged event by the
    # person's ghost; taking it back redacts it
    first = carol.send(room, "lunch at noon?", "groupchat")
    original = await boss.wait_for(room_id, text_from(body="lunch at noon?"))
    react = xml("urn:xmpp:reactions:0", "reactions", id=first)
    react.append(xml("urn:xmpp:reactions:0", "reaction"))
    react[0].text = "👍"
    carol.send(room, None, "groupchat", extra=[react])
    reaction = await boss.wait_for(room_id, lambda e: e.get("type") == "m.reaction")
    assert reaction["content"]["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": original["event_id"],
        "key": "👍",
    }
    assert reaction["sender"] == original["sender"]
    carol.send(room, None, "groupchat", extra=[xml("urn:xmpp:reactions:0", "reactions", id=first)])
    await boss.wait_for(
        room_id,
        lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == reaction["event_id"],
    )

    # Matrix → XMPP: the occupant's whole set of reactions, after each change
    mark = carol.mark()
    sent = await boss.send_text(room_id, "ship it?")
    bridged = await carol.wait_for(lambda m: m["body"] == "ship it?", start=mark)

    async def react_from_matrix(key):
        response = await boss.client.room_send(
            room_id,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent, "key": key}},
        )
        return response.event_id

    party = await react_from_matrix("🎉")
    got = await carol.wait_for(lambda m: reaction_keys(m) is not None, start=mark)
    assert reaction_keys(got) == (bridged["id"], ["🎉"])
    assert got["from"].full == f"{room}/Boss React"
    mark = carol.mark()
    await react_from_matrix("👍")
    got = await carol.wait_for(lambda m: reaction_keys(m) is not None, start=mark)
    assert reaction_keys(got) == (bridged["id"], ["🎉", "👍"])
    mark = carol.mark()
    await boss.client.room_redact(room_id, party)
    got = await carol.wait_for(lambda m: reaction_keys(m) is not None, start=mark)
    assert reaction_keys(got) == (bridged["id"], ["👍"])


def chat_state(msg):
    return next(
        (
            state
            for state in ("composing", "paused", "active")
            if child_of(msg, "http://jabber.org/protocol/chatstates", state) is not None
        ),
        None,
    )


async def wait_typing(user, room_id, since, predicate, timeout=30.0):
    """The users typing in ``room_id`` (from the sync's ephemeral events) once they
    satisfy ``predicate``; returns them and the next sync token."""
    from nio import SyncResponse, TypingNoticeEvent

    deadline = time.monotonic() + timeout
    typing = None
    while time.monotonic() < deadline:
        response = await user.client.sync(timeout=500, since=since)
        assert isinstance(response, SyncResponse), response
        since = response.next_batch
        room = response.rooms.join.get(room_id)
        for event in room.ephemeral if room else []:
            if isinstance(event, TypingNoticeEvent):
                typing = set(event.users)
        if typing is not None and predicate(typing):
            return typing, since
    raise TimeoutError(f"typing in {room_id} never matched; last seen: {typing}")


async def test_typing_shows_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    dave = await xmpp_person("dave")
    boss = await matrix_person("boss13", "Boss Type")
    room, room_id = await linked_group(xmpp_stack, boss, [(dave, "Dave T")], prosody)
    dave.send(room, "hello", "groupchat")
    ghost = (await boss.wait_for(room_id, text_from(body="hello")))["sender"]

    # XMPP → Matrix: composing makes the person's ghost type, paused stops it
    since = boss.client.next_batch
    states = "http://jabber.org/protocol/chatstates"
    dave.send(room, None, "groupchat", extra=[xml(states, "composing")])
    _, since = await wait_typing(boss, room_id, since, lambda users: ghost in users)
    dave.send(room, None, "groupchat", extra=[xml(states, "paused")])
    await wait_typing(boss, room_id, since, lambda users: ghost not in users)

    # Matrix → XMPP: typing is composing from the person's occupant (who joins the room
    # to type, before their first message), stopping is paused
    mark, presences = dave.mark(), len(dave.presences)
    await boss.client.room_typing(room_id, True, timeout=30000)
    got = await dave.wait_for(lambda m: chat_state(m) == "composing", start=mark)
    assert got["from"].full == f"{room}/Boss Type"
    assert any(p["from"].full == f"{room}/Boss Type" for p in dave.presences[presences:])
    await boss.client.room_typing(room_id, False)
    got = await dave.wait_for(lambda m: chat_state(m) == "paused", start=mark)
    assert got["from"].full == f"{room}/Boss Type"
    await boss.send_text(room_id, "let me think")
    await dave.wait_for(lambda m: m["body"] == "let me think", start=mark)


async def wait_receipt(user, room_id, since, event_id, reader, timeout=30.0):
    """Wait until the sync shows ``reader``'s read receipt on ``event_id``."""
    from nio import ReceiptEvent, SyncResponse

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await user.client.sync(timeout=500, since=since)
        assert isinstance(response, SyncResponse), response
        since = response.next_batch
        room = response.rooms.join.get(room_id)
        for event in room.ephemeral if room else []:
            if isinstance(event, ReceiptEvent) and any(
                r.event_id == event_id and r.user_id == reader and r.receipt_type == "m.read"
                for r in event.receipts
            ):
                return
    raise TimeoutError(f"no read receipt of {reader} on {event_id}")


async def test_read_markers_go_both_ways(xmpp_stack, prosody, xmpp_person, matrix_person):
    erin = await xmpp_person("erin")
    boss = await matrix_person("boss14", "Boss Read")
    room, room_id = await linked_group(xmpp_stack, boss, [(erin, "Erin R")], prosody)
    markers = "urn:xmpp:chat-markers:0"

    # XMPP → Matrix: a displayed marker moves the ghost's read receipt to that message
    mark = erin.mark()
    since = boss.client.next_batch
    sent = await boss.send_text(room_id, "please confirm")
    bridged = await erin.wait_for(lambda m: m["body"] == "please confirm", start=mark)
    erin.send(room, "seen", "groupchat")
    ghost = (await boss.wait_for(room_id, text_from(body="seen")))["sender"]
    erin.send(room, None, "groupchat", extra=[xml(markers, "displayed", id=bridged["id"])])
    await wait_receipt(boss, room_id, since, sent, ghost)

    # Matrix → XMPP: a read receipt on a message from XMPP is a displayed marker of it
    first = erin.send(room, "did you read this?", "groupchat")
    event = await boss.wait_for(room_id, text_from(body="did you read this?"))
    await boss.client.room_read_markers(room_id, event["event_id"], event["event_id"])
    got = await erin.wait_for(
        lambda m: (
            child_of(m, markers, "displayed") is not None and m["from"].resource == "Boss Read"
        ),
        start=mark,
    )
    assert child_of(got, markers, "displayed").get("id") == first


def bounced(to_jid):
    """A predicate: an error message from the bridge's address ``to_jid``."""

    def match(msg):
        return msg["type"] == "error" and msg["from"].bare == to_jid

    return match


async def test_messages_to_matrix_people_who_do_not_exist_or_are_refused_open_nothing(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    frank = await xmpp_person("frank")
    refused = await matrix_person("refused1")
    mark = frank.mark()
    for invented in ("nobody1", "nobody2", "nobody3"):
        jid = f"{invented}=3alocalhost@{prosody.component}"
        frank.send(jid, f"hello {invented}", "chat")
        error = await frank.wait_for(bounced(jid), start=mark)
        assert f"there is no Matrix user @{invented}:localhost" in error["error"]["text"]
    refused_jid = f"refused1=3alocalhost@{prosody.component}"
    frank.send(refused_jid, "hello refused", "chat")
    error = await frank.wait_for(bounced(refused_jid), start=mark)
    assert "cannot be reached through this bridge" in error["error"]["text"]
    await refused.sync_once()  # the refusal came after the decision: an invite would be here
    assert not refused.invites


async def test_a_person_the_bridge_refuses_cannot_reach_xmpp_by_inviting_a_ghost(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    dave = await xmpp_person("dave")
    refused = await matrix_person("refused1")
    ghost = f"@anywhere_xmpp_dave=40{prosody.domain}:localhost"
    room_id = await refused.create_room([ghost], direct=True)
    left = await refused.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == ghost
            and e["content"].get("membership") == "leave"
        ),
    )
    assert "may not use this bridge" in left["content"].get("reason", "")
    mark = dave.mark()
    await refused.send_text(room_id, "can you hear me?")
    # a later message through the bridge, to know the first one had its chance
    eve = await matrix_person("eve2", "Eve Two")
    dm = await eve.create_room([ghost], direct=True)
    await eve.wait_joined(dm, ghost)
    await eve.send_text(dm, "marker from eve")
    await dave.wait_for(lambda m: m["body"] == "marker from eve", start=mark)
    assert not [m for m in dave.messages[mark:] if m["body"] == "can you hear me?"]


async def test_nickname_changes_in_a_semi_anonymous_room_keep_one_ghost(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    erin = await xmpp_person("erin")
    boss = await matrix_person("boss11", "Boss Nam")
    # erin makes the room, so the bridge's relay is a plain participant: it sees
    # nicknames and occupant ids (Prosody 0.12 stamps them), not addresses; without
    # occupant ids see test_xmpp_stanzas.py
    room, room_id = await linked_group(xmpp_stack, boss, [(erin, "Erin 1")], prosody)
    senders = []
    for n in (1, 2, 3):
        if n > 1:
            erin.client.make_presence(pto=f"{room}/Erin {n}").send()
        erin.send(room, f"as Erin {n}", "groupchat")
        event = await boss.wait_for(room_id, text_from(body=f"as Erin {n}"))
        senders.append(event["sender"])
    assert len(set(senders)) == 1
    await boss.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == senders[0]
            and e["content"].get("displayname") == "Erin 3 (XMPP)"
        ),
    )


async def test_a_file_link_with_user_at_host_is_not_fetched_from_the_other_host(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    from aiohttp import web

    hits = []

    async def secret(request):
        hits.append(request.path)
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/secret.png", secret)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    internal = site._server.sockets[0].getsockname()[1]
    try:
        alice = await xmpp_person("alice")
        boss = await matrix_person("boss12", "Boss Ahn")
        room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice L")], prosody)
        # the configured prefix is http://127.0.0.1:HTTP_PORT (no trailing /)
        url = f"http://127.0.0.1:{prosody.http_port}@127.0.0.1:{internal}/secret.png"
        share_link(alice, room, url)
        event = await boss.wait_for(room_id, text_from(body=url))
        assert event["content"]["msgtype"] == "m.text"  # it stays a link
        assert hits == []  # and the internal service was never asked
    finally:
        await runner.cleanup()


async def test_one_to_one_messages_carry_origin_ids_derived_from_the_matrix_event(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    """1:1 delivery is at least once (a component cannot read a person's archive): a
    message repeated after a crash carries the same origin id (XEP-0359), derived from
    the Matrix event, so the person's client can drop the repeat."""
    from anywhere.plugins.groups.xmpp.stanzas import NS_SID, stanza_id_for

    bob = await xmpp_person("bob")
    gil = await matrix_person("gil1", "Gil Bae")
    gil_jid = f"gil1=3alocalhost@{prosody.component}"
    bob.send(gil_jid, "hello gil", "chat")
    room_id = await wait_invited(gil)
    await gil.client.join(room_id)
    await gil.wait_for(room_id, text_from(body="hello gil"))
    mark = bob.mark()
    event_id = await gil.send_text(room_id, "origin check")
    got = await bob.wait_for(lambda m: m["body"] == "origin check", start=mark)
    origin = child_of(got, NS_SID, "origin-id")
    assert origin is not None and origin.get("id") == stanza_id_for(event_id)


async def test_while_the_bridge_is_down_a_one_to_one_message_bounces_to_its_sender(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    bob = await xmpp_person("bob")
    await matrix_person("hal1", "Hal Kim")
    hal_jid = f"hal1=3alocalhost@{prosody.component}"
    errors = []
    bob.client.add_event_handler("message_error", errors.append)  # bounces have no body
    await asyncio.to_thread(xmpp_stack.bridge.kill)
    try:
        bob.send(hal_jid, "are you there, hal?", "chat")
        deadline = time.monotonic() + 30
        while not any(e["from"].bare == hal_jid for e in errors):
            assert time.monotonic() < deadline, "no error came back to the sender"
            await asyncio.sleep(0.05)
        error = next(e for e in errors if e["from"].bare == hal_jid)
        assert error["error"]["condition"]  # e.g. service-unavailable: not silently lost
    finally:
        await asyncio.to_thread(xmpp_stack.bridge.start)


def changes_of(user, room_id, event_id):
    """Redactions of, and edits (m.replace) to, ``event_id`` that ``user`` has seen."""
    return [
        e
        for e in user.timeline.get(room_id, [])
        if (e.get("type") == "m.room.redaction" and e.get("redacts") == event_id)
        or (e.get("content", {}).get("m.relates_to", {}).get("event_id") == event_id)
    ]


async def test_only_the_author_retracts_or_corrects_a_message_in_a_chat_and_a_room(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    retract = "urn:xmpp:message-retract:1"
    correct = "urn:xmpp:message-correct:0"
    # a 1:1 chat: the XMPP person names the Matrix person's message
    bob = await xmpp_person("bob")
    ivy = await matrix_person("ivy1", "Ivy Han")
    ivy_jid = f"ivy1=3alocalhost@{prosody.component}"
    bob.send(ivy_jid, "hi ivy", "chat")
    dm = await wait_invited(ivy)
    await ivy.client.join(dm)
    await ivy.wait_for(dm, text_from(body="hi ivy"))
    mark = bob.mark()
    mine = await ivy.send_text(dm, "ivy's own words")
    bridged = await bob.wait_for(lambda m: m["body"] == "ivy's own words", start=mark)
    bob.send(ivy_jid, "x", "chat", extra=[xml(retract, "retract", id=bridged["id"])])
    bob.send(ivy_jid, "forged words", "chat", extra=[xml(correct, "replace", id=bridged["id"])])
    bob.send(ivy_jid, "dm marker", "chat")
    await ivy.wait_for(dm, text_from(body="dm marker"))
    assert changes_of(ivy, dm, mine) == []
    assert not bodies(ivy, dm, "* forged words")

    # a room: one occupant names another's message; the author's own correction works
    alice, carol = await xmpp_person("alice"), await xmpp_person("carol")
    boss = await matrix_person("boss14", "Boss Cho")
    room, room_id = await linked_group(
        xmpp_stack, boss, [(alice, "Alice T"), (carol, "Carol T")], prosody
    )
    said = carol.send(room, "carol said this", "groupchat")
    original = await boss.wait_for(room_id, text_from(body="carol said this"))
    alice.send(room, "x", "groupchat", extra=[xml(retract, "retract", id=said)])
    alice.send(room, "alice's version", "groupchat", extra=[xml(correct, "replace", id=said)])
    carol.send(room, "carol's fix", "groupchat", extra=[xml(correct, "replace", id=said)])
    await boss.wait_for(
        room_id,
        lambda e: e.get("content", {}).get("m.new_content", {}).get("body") == "carol's fix",
    )
    changes = changes_of(boss, room_id, original["event_id"])
    assert [c["content"]["m.new_content"]["body"] for c in changes] == ["carol's fix"]


async def test_a_message_whose_id_looks_like_the_bridges_own_is_still_bridged(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    alice = await xmpp_person("alice")
    boss = await matrix_person("boss15", "Boss Yu")
    room, room_id = await linked_group(xmpp_stack, boss, [(alice, "Alice M")], prosody)
    alice.send(room, "an id like yours", "groupchat", msg_id="mx" + ("0123456789abcdef" * 2)[:30])
    await boss.wait_for(room_id, text_from(body="an id like yours"))


async def test_ghosts_are_marked_and_have_no_power_over_people_in_chats_they_open(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    erin = await xmpp_person("erin")
    # an XMPP person takes a Matrix person's name: their ghost says where it is from
    boss = await matrix_person("boss16", "Jun Park")
    room, room_id = await linked_group(xmpp_stack, boss, [(erin, "Jun Park")], prosody)
    erin.send(room, "I am Jun", "groupchat")
    event = await boss.wait_for(room_id, text_from(body="I am Jun"))
    assert await displayname(boss, room_id, event["sender"]) == "Jun Park (XMPP)"

    kay = await matrix_person("kay1", "Kay Lim")
    erin.send(f"kay1=3alocalhost@{prosody.component}", "hi kay", "chat")
    dm = await wait_invited(kay)
    await kay.client.join(dm)
    message = await kay.wait_for(dm, text_from(body="hi kay"))
    levels = (await kay.client.room_get_state_event(dm, "m.room.power_levels")).content
    ghost_level = levels["users"][message["sender"]]
    assert levels["users"][kay.user_id] == 100
    assert ghost_level < levels["redact"] and ghost_level < levels["kick"]


async def test_a_newer_direct_chat_with_a_ghost_becomes_the_one_that_reaches_the_person(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    dave = await xmpp_person("dave")
    lee = await matrix_person("lee1", "Lee Oh")
    lee_jid = f"lee1=3alocalhost@{prosody.component}"
    dave.send(lee_jid, "first chat", "chat")
    old = await wait_invited(lee)
    await lee.client.join(old)
    event = await lee.wait_for(old, text_from(body="first chat"))
    ghost = event["sender"]

    new = await lee.create_room([ghost], direct=True)
    await lee.wait_joined(new, ghost)
    await lee.wait_for(old, lambda e: new in e.get("content", {}).get("body", ""))
    dave.send(lee_jid, "to the newest chat", "chat")
    await lee.wait_for(new, text_from(body="to the newest chat"))
    mark = dave.mark()
    await lee.send_text(new, "from the newest chat")
    await dave.wait_for(lambda m: m["body"] == "from the newest chat", start=mark)
    assert not bodies(lee, old, "to the newest chat")


async def test_a_person_who_left_the_chat_is_invited_to_a_new_one_by_the_next_message(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    dave = await xmpp_person("dave")
    mia = await matrix_person("mia1", "Mia Ra")
    mia_jid = f"mia1=3alocalhost@{prosody.component}"
    dave.send(mia_jid, "hello mia", "chat")
    first = await wait_invited(mia)
    await mia.client.join(first)
    await mia.wait_for(first, text_from(body="hello mia"))
    await mia.client.room_leave(first)
    mia.invites.clear()
    # the bridge has handled the leave (its log says so)
    log = xmpp_stack.bridge.log_path
    deadline = time.monotonic() + 30
    while "direct chat retired" not in log.read_text() or first not in log.read_text():
        assert time.monotonic() < deadline, "the bridge did not see the person leave"
        await asyncio.sleep(0.1)
    dave.send(mia_jid, "are you still there?", "chat")
    deadline = time.monotonic() + 30
    while not mia.invites:
        assert time.monotonic() < deadline, "no new invite after the person left"
        await mia.sync_once()
    second = next(iter(mia.invites))
    assert second != first
    await mia.client.join(second)
    await mia.wait_for(second, text_from(body="are you still there?"))


async def test_linking_a_room_shows_its_recent_history_once_with_senders_and_times(
    xmpp_stack, prosody, xmpp_person, matrix_person
):
    alice = await xmpp_person("alice")
    boss = await matrix_person("boss17", "Boss Ban")
    room = f"history{next(ROOM_SEQ)}@{prosody.muc}"
    await alice.join(room, "Alice H")
    mark = alice.mark()
    for i in range(3):
        alice.send(room, f"said before the link {i}", "groupchat")
    await alice.wait_for(lambda m: m["body"] == "said before the link 2", start=mark)
    said_at = time.time() * 1000

    bot = xmpp_stack.bot_id
    dm = await boss.dm(bot)
    body = await ask(boss, dm, bot, f"!group create History-{next(ROOM_SEQ)}", "Created")
    room_id = next(w for w in body.split() if w.startswith("!")).rstrip(".:,")
    await wait_invited(boss, room_id)
    await boss.client.join(room_id)
    await boss.wait_joined(room_id, boss.user_id)
    await ask(boss, room_id, bot, f"!group link xmpp:{room}", "Linked")
    await boss.wait_for(room_id, text_from(body="said before the link 2"))
    history = [e for e in boss.timeline[room_id] if "said before the link" in str(e)]
    assert [e["content"]["body"] for e in history] == [
        f"said before the link {i}" for i in range(3)
    ]
    assert all(e["content"].get("org.anywhere.history") is True for e in history)
    assert all(e["origin_server_ts"] <= said_at + 1000 for e in history)  # when said
    assert len({e["sender"] for e in history}) == 1

    # linked again: the same history is not shown twice
    await ask(boss, room_id, bot, "!group unlink", "Unlinked")
    await ask(boss, room_id, bot, f"!group link xmpp:{room}", "Linked")
    alice.send(room, "after the second link", "groupchat")
    await boss.wait_for(room_id, text_from(body="after the second link"))
    for i in range(3):
        assert len(bodies(boss, room_id, f"said before the link {i}")) == 1
