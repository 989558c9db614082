"""What the XMPP connector reads from stanzas, including hostile ones."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from anywhere.plugins.groups.xmpp import stanzas

NS = "jabber:component:accept"


def stanza(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_corrections_retractions_replies_and_links_are_read():
    msg = stanza(
        f'<message xmlns="{NS}" id="m2"><body>new</body>'
        '<replace xmlns="urn:xmpp:message-correct:0" id="m1"/>'
        '<reply xmlns="urn:xmpp:reply:0" id="m0"/>'
        '<x xmlns="jabber:x:oob"><url> https://up.example/f.png </url></x>'
        '<origin-id xmlns="urn:xmpp:sid:0" id="o2"/></message>'
    )
    incoming = stanzas.read_message(msg)
    assert (incoming.id, incoming.body, incoming.replace, incoming.reply_to) == (
        "o2",
        "new",
        "m1",
        "m0",
    )
    assert incoming.oob_url == "https://up.example/f.png"
    old_style = stanza(
        f'<message xmlns="{NS}" id="r"><apply-to xmlns="urn:xmpp:fasten:0" id="m1">'
        '<retract xmlns="urn:xmpp:message-retract:0"/></apply-to></message>'
    )
    assert stanzas.read_message(old_style).retract == "m1"


def test_locations_out_of_range_or_not_numbers_are_ignored():
    def geo(lat, lon):
        return stanza(
            f'<message xmlns="{NS}"><geoloc xmlns="http://jabber.org/protocol/geoloc">'
            f"<lat>{lat}</lat><lon>{lon}</lon></geoloc></message>"
        )

    assert stanzas.read_message(geo("37.5", "127")).location.latitude == 37.5
    assert stanzas.read_message(geo("91", "0")).location is None
    assert stanzas.read_message(geo("north", "0")).location is None


def test_characters_xml_cannot_carry_are_removed():
    assert stanzas.clean_text("a\x00b\x07c\x1bd\ufffee\tf\ng") == "abcde\tf\ng"


def test_only_the_bridges_own_ids_count_as_its_messages():
    ours = stanzas.stanza_id_for("$event")
    assert stanzas.is_bridge_id(ours) and ours == stanzas.stanza_id_for("$event")
    assert not stanzas.is_bridge_id("mx123")
    assert not stanzas.is_bridge_id("5f0c9b6e-uuid")


def test_upload_slots_keep_only_the_allowed_headers():
    slot = stanza(
        '<iq xmlns="jabber:client"><slot xmlns="urn:xmpp:http:upload:0">'
        '<put url="https://up/put"><header name="Authorization">Bearer x</header>'
        '<header name="Host">evil</header></put><get url="https://up/get"/></slot></iq>'
    )
    assert stanzas.read_slot(slot) == (
        "https://up/put",
        "https://up/get",
        {"Authorization": "Bearer x"},
    )
    assert stanzas.read_slot(stanza('<iq xmlns="jabber:client"/>')) == (None, None, {})


def test_reactions_chat_states_and_markers_are_read_and_bounded():
    many = "".join(f"<reaction>{i}</reaction>" for i in range(50))
    msg = stanza(
        f'<message xmlns="{NS}" id="r1">'
        '<reactions xmlns="urn:xmpp:reactions:0" id="m1"><reaction>👍</reaction>'
        f"<reaction>👍</reaction><reaction> </reaction><reaction>{'x' * 500}</reaction>"
        f"{many}</reactions>"
        '<composing xmlns="http://jabber.org/protocol/chatstates"/>'
        '<displayed xmlns="urn:xmpp:chat-markers:0" id="m0"/></message>'
    )
    incoming = stanzas.read_message(msg)
    target, keys = incoming.reactions
    assert target == "m1" and keys[0] == "👍" and keys[1] == "x" * 64
    assert len(keys) == stanzas.MAX_REACTIONS
    assert incoming.chat_state == "composing" and incoming.displayed == "m0"
    assert stanzas.read_message(stanza(f'<message xmlns="{NS}"><body>hi</body></message>')) == (
        stanzas.Incoming("", "hi")
    )


def test_a_vcard_photo_and_its_announced_hash_are_read_and_bad_data_is_not():
    presence = stanza(
        f'<presence xmlns="{NS}"><x xmlns="vcard-temp:x:update"><photo> ABC123 </photo></x>'
        "</presence>"
    )
    assert stanzas.photo_hash(presence) == "abc123"
    assert stanzas.photo_hash(stanza(f'<presence xmlns="{NS}"/>')) is None
    good = stanza(
        f'<iq xmlns="{NS}" type="result"><vCard xmlns="vcard-temp"><PHOTO><TYPE>image/jpeg'
        "</TYPE><BINVAL>aGVs\n bG8=</BINVAL></PHOTO></vCard></iq>"
    )
    assert stanzas.vcard_photo(good) == ("image/jpeg", b"hello")
    bad = stanza(
        f'<iq xmlns="{NS}" type="result"><vCard xmlns="vcard-temp"><PHOTO><TYPE>text/html'
        "</TYPE><BINVAL>not base64!</BINVAL></PHOTO></vCard></iq>"
    )
    assert stanzas.vcard_photo(bad) is None
    assert stanzas.vcard_photo(stanza(f'<iq xmlns="{NS}" type="result"/>')) is None


def test_a_renaming_occupant_known_only_by_nickname_keeps_one_ghost():
    """A room that shows neither addresses nor occupant ids (XEP-0421): each nickname
    change would otherwise make a new ghost."""
    from slixmpp.stanza import Message, Presence

    from anywhere.plugins.groups.connector import Portal
    from anywhere.plugins.groups.xmpp.connector import XmppConnector

    room = "r@conf.example"
    connector = XmppConnector()
    settings = {"component_jid": "matrix.example", "relay_nickname": "Matrix"}
    connector.configure(settings, "example")
    connector.relay.portals[room] = Portal("xmpp", room, "!room:example")
    inbound = connector.inbound
    to = connector.addresses.relay_jid
    muc = "http://jabber.org/protocol/muc#user"

    def presence(nick, extra="", ptype=""):
        kind = f' type="{ptype}"' if ptype else ""
        return Presence(
            xml=stanza(
                f'<presence xmlns="{NS}" from="{room}/{nick}" to="{to}"{kind}>'
                f'<x xmlns="{muc}"><item role="participant" affiliation="none"{extra}/>'
                "</x></presence>"
            )
        )

    def said(nick, body):
        inbound.on_message(
            Message(
                xml=stanza(
                    f'<message xmlns="{NS}" from="{room}/{nick}" to="{to}" type="groupchat">'
                    f"<body>{body}</body></message>"
                )
            )
        )

    def renamed(old, new):
        code = f'<status xmlns="{muc}" code="303"/>'
        rename = Presence(
            xml=stanza(
                f'<presence xmlns="{NS}" from="{room}/{old}" to="{to}" type="unavailable">'
                f'<x xmlns="{muc}"><item role="participant" affiliation="none" nick="{new}"/>'
                f"{code}</x></presence>"
            )
        )
        inbound.on_presence(rename)
        inbound.on_presence(presence(new))

    inbound.on_presence(presence("Erin"))
    said("Erin", "one")
    renamed("Erin", "Erin J")
    said("Erin J", "two")
    renamed("Erin J", "EJ")
    said("EJ", "three")
    inbound.on_presence(presence("EJ", ptype="unavailable"))
    inbound.on_presence(presence("Erin J"))  # someone else takes an old nickname
    said("Erin J", "four")

    senders = []
    while not inbound.queue.empty():
        kind, item = inbound.queue.get_nowait()
        if kind == "message":
            body = stanzas.read_message(item[0].xml).body
            senders.append((body, item[1].id, item[1].name))
        else:
            senders.append((kind, item[1].id, item[1].name))
    ghost = f"{room}/Erin"
    assert senders == [
        ("membership", ghost, "Erin"),
        ("one", ghost, "Erin"),
        ("membership", ghost, "Erin J"),
        ("two", ghost, "Erin J"),
        ("membership", ghost, "EJ"),
        ("three", ghost, "EJ"),
        ("membership", ghost, "EJ"),  # EJ leaves
        ("membership", f"{room}/Erin J", "Erin J"),  # a newcomer: not Erin's ghost
        ("four", f"{room}/Erin J", "Erin J"),
    ]


def test_a_replys_quoted_fallback_is_cut_from_the_body():
    quote = "> Alice wrote:\n> lunch at 12?\n"
    msg = stanza(
        f'<message xmlns="{NS}" id="r1"><body>{quote}yes, 12 is fine</body>'
        '<reply xmlns="urn:xmpp:reply:0" id="m0" to="room@conf/Alice"/>'
        '<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0">'
        f'<body start="0" end="{len(quote)}"/></fallback></message>'
    )
    incoming = stanzas.read_message(msg)
    assert (incoming.body, incoming.reply_to) == ("yes, 12 is fine", "m0")
    bogus = stanza(
        f'<message xmlns="{NS}" id="r2"><body>keep all of this</body>'
        '<reply xmlns="urn:xmpp:reply:0" id="m0"/>'
        '<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0">'
        '<body start="5" end="999"/></fallback>'
        '<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:other:0">'
        '<body start="0" end="4"/></fallback></message>'
    )
    assert stanzas.read_message(bogus).body == "keep all of this"
