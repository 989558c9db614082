"""Reading and writing the XMPP extensions the connector understands, on plain
ElementTree elements (so that a missing slixmpp plugin never changes what we parse)."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.matcher.base import MatcherBase

from ..connector import Location

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_CORRECT = "urn:xmpp:message-correct:0"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"
NS_RETRACT_1 = "urn:xmpp:message-retract:1"
NS_FASTEN = "urn:xmpp:fasten:0"
NS_REPLY = "urn:xmpp:reply:0"
NS_FALLBACK = "urn:xmpp:fallback:0"
NS_OOB = "jabber:x:oob"
NS_SID = "urn:xmpp:sid:0"
NS_GEOLOC = "http://jabber.org/protocol/geoloc"
NS_NICK = "http://jabber.org/protocol/nick"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_DELAY = "urn:xmpp:delay"
NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_REACTIONS = "urn:xmpp:reactions:0"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_MARKERS = "urn:xmpp:chat-markers:0"
CHAT_STATES = ("composing", "paused", "active", "inactive", "gone")
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
MAX_REACTIONS = 20
MAX_REACTION_CHARS = 64

# Characters XML 1.0 does not allow (a hostile or broken client's body loses them)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_text(text: str) -> str:
    return _INVALID_XML.sub("", text)


def stanza_id_for(event_id: str) -> str:
    """The XMPP id of a message from Matrix: derived from the event, so a repeat is
    recognisable."""
    return "mx" + hashlib.sha256(event_id.encode()).hexdigest()[:30]


_OUR_ID = re.compile(r"mx[0-9a-f]{30}")


def is_bridge_id(stanza_id: str) -> bool:
    """True for the ids :func:`stanza_id_for` makes (messages this bridge sent)."""
    return bool(_OUR_ID.fullmatch(stanza_id))


class BodylessMessages(MatcherBase):
    """Matches the message stanzas slixmpp's own ``message`` event leaves out (it fires
    only for messages with a body): reactions, chat states, markers."""

    def __init__(self, ns: str) -> None:
        super().__init__(ns)

    def match(self, xml: StanzaBase) -> bool:
        ns = self._criteria
        return (
            xml.xml.tag == f"{{{ns}}}message"
            and xml.xml.find(f"{{{ns}}}body") is None
            and xml.xml.get("type") != "error"
        )


def child(xml: ET.Element, ns: str, name: str) -> ET.Element | None:
    return xml.find(f"{{{ns}}}{name}")


@dataclass
class Incoming:
    """What the connector needs from a message stanza."""

    id: str
    body: str
    replace: str | None = None
    retract: str | None = None
    reply_to: str | None = None
    oob_url: str | None = None
    location: Location | None = None
    nick: str | None = None
    delayed: bool = False
    reactions: tuple[str, list[str]] | None = None  # (target id, the sender's reactions)
    chat_state: str | None = None  # XEP-0085: composing, paused, active, ...
    displayed: str | None = None  # XEP-0333: the id of the message the sender has seen


def read_message(xml: ET.Element) -> Incoming:
    body_el = xml.find("{jabber:component:accept}body")
    if body_el is None:
        body_el = xml.find("{jabber:client}body")  # a message forwarded from an archive
    if body_el is None:
        body_el = xml.find("body")
    body = clean_text(body_el.text or "") if body_el is not None else ""
    origin = child(xml, NS_SID, "origin-id")
    msg_id = (origin.get("id") if origin is not None else None) or xml.get("id") or ""
    incoming = Incoming(msg_id, body)
    replace = child(xml, NS_CORRECT, "replace")
    if replace is not None:
        incoming.replace = replace.get("id")
    for ns in (NS_RETRACT_1, NS_RETRACT_0):
        retract = child(xml, ns, "retract")
        if retract is not None and retract.get("id"):
            incoming.retract = retract.get("id")
    fasten = child(xml, NS_FASTEN, "apply-to")
    if fasten is not None and child(fasten, NS_RETRACT_0, "retract") is not None:
        incoming.retract = fasten.get("id")
    reply = child(xml, NS_REPLY, "reply")
    if reply is not None:
        incoming.reply_to = reply.get("id")
        incoming.body = strip_fallback(xml, body, NS_REPLY)
    oob = child(xml, NS_OOB, "x")
    if oob is not None:
        url = oob.find(f"{{{NS_OOB}}}url")
        if url is not None and url.text:
            incoming.oob_url = url.text.strip()
    geoloc = child(xml, NS_GEOLOC, "geoloc")
    if geoloc is not None:
        incoming.location = read_geoloc(geoloc)
    nick = child(xml, NS_NICK, "nick")
    if nick is not None and nick.text:
        incoming.nick = clean_text(nick.text)
    incoming.delayed = child(xml, NS_DELAY, "delay") is not None
    incoming.chat_state = next(
        (state for state in CHAT_STATES if child(xml, NS_CHATSTATES, state) is not None), None
    )
    displayed = child(xml, NS_MARKERS, "displayed")
    if displayed is not None and displayed.get("id"):
        incoming.displayed = displayed.get("id")
    reactions = child(xml, NS_REACTIONS, "reactions")
    if reactions is not None and reactions.get("id"):
        keys = []
        for el in reactions.findall(f"{{{NS_REACTIONS}}}reaction"):
            key = clean_text(el.text or "").strip()[:MAX_REACTION_CHARS]
            if key and key not in keys:
                keys.append(key)
        incoming.reactions = (reactions.get("id"), keys[:MAX_REACTIONS])
    return incoming


def strip_fallback(xml: ET.Element, body: str, feature: str) -> str:
    """``body`` without the parts a XEP-0428 ``<fallback for=feature>`` marks (a reply's
    quote, XEP-0461): the receiving side shows the reply its own way. Offsets count
    characters (code points); ranges out of order or out of the body are ignored."""
    cuts = []
    for fallback in xml.findall(f"{{{NS_FALLBACK}}}fallback"):
        if fallback.get("for") != feature:
            continue
        for part in fallback.findall(f"{{{NS_FALLBACK}}}body"):
            try:
                start, end = int(part.get("start", "")), int(part.get("end", ""))
            except ValueError:
                continue
            if 0 <= start < end <= len(body):
                cuts.append((start, end))
    for start, end in sorted(cuts, reverse=True):
        body = body[:start] + body[end:]
    return body.strip() if cuts else body


def reactions(target_id: str, keys: list[str]) -> ET.Element:
    el = element(NS_REACTIONS, "reactions", id=target_id)
    for key in keys:
        el.append(element(NS_REACTIONS, "reaction", clean_text(key)))
    return el


def photo_hash(xml: ET.Element) -> str | None:
    """The SHA-1 of the sender's vCard photo, from a presence (XEP-0153); None when
    the presence says nothing about it, ``""`` when the person has no photo."""
    update = child(xml, NS_VCARD_UPDATE, "x")
    if update is None:
        return None
    photo = update.find(f"{{{NS_VCARD_UPDATE}}}photo")
    if photo is None:
        return None
    return (photo.text or "").strip().lower()


class VcardRequests(MatcherBase):
    """Matches a request for someone's vCard (XEP-0054): an iq get with a vCard in it."""

    def match(self, xml: StanzaBase) -> bool:
        ns = self._criteria
        return (
            xml.xml.tag == f"{{{ns}}}iq"
            and xml.xml.get("type") == "get"
            and child(xml.xml, NS_VCARD, "vCard") is not None
        )


def vcard(name: str, photo: tuple[str, bytes] | None) -> ET.Element:
    """A vcard-temp card with a name and, if given, a ``(mimetype, bytes)`` photo."""
    import base64

    card = element(NS_VCARD, "vCard")
    card.append(element(NS_VCARD, "FN", name))
    card.append(element(NS_VCARD, "NICKNAME", name))
    if photo is not None:
        picture = element(NS_VCARD, "PHOTO")
        picture.append(element(NS_VCARD, "TYPE", photo[0]))
        picture.append(element(NS_VCARD, "BINVAL", base64.b64encode(photo[1]).decode()))
        card.append(picture)
    return card


def vcard_update(photo_sha1: str) -> ET.Element:
    """XEP-0153's presence element: the SHA-1 of the vCard photo (empty: no photo)."""
    update = element(NS_VCARD_UPDATE, "x")
    update.append(element(NS_VCARD_UPDATE, "photo", photo_sha1 or None))
    return update


def vcard_photo(xml: ET.Element) -> tuple[str, bytes] | None:
    """``(mimetype, bytes)`` of the PHOTO in a vcard-temp result (XEP-0054), if any."""
    import base64
    import binascii

    vcard = child(xml, NS_VCARD, "vCard")
    photo = vcard.find(f"{{{NS_VCARD}}}PHOTO") if vcard is not None else None
    if photo is None:
        return None
    binval = photo.find(f"{{{NS_VCARD}}}BINVAL")
    mimetype = photo.find(f"{{{NS_VCARD}}}TYPE")
    if binval is None or not binval.text:
        return None
    try:
        data = base64.b64decode("".join(binval.text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    kind = (mimetype.text or "").strip() if mimetype is not None else ""
    return (kind if kind.startswith("image/") else "image/png"), data


def read_geoloc(geoloc: ET.Element) -> Location | None:
    def number(name: str) -> float | None:
        el = geoloc.find(f"{{{NS_GEOLOC}}}{name}")
        try:
            return float(el.text) if el is not None and el.text else None
        except ValueError:
            return None

    lat, lon = number("lat"), number("lon")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    text = geoloc.find(f"{{{NS_GEOLOC}}}text")
    return Location(lat, lon, clean_text(text.text or "") if text is not None else "")


def element(ns: str, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.Element(
        f"{{{ns}}}{name}", {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
    )
    if text is not None:
        el.text = text
    return el


def geoloc(location: Location) -> ET.Element:
    el = element(NS_GEOLOC, "geoloc")
    for name, value in (
        ("lat", f"{location.latitude:.6f}"),
        ("lon", f"{location.longitude:.6f}"),
        ("text", location.description),
    ):
        if value:
            el.append(element(NS_GEOLOC, name, value))
    return el


def muc_join(history: int) -> ET.Element:
    x = element(NS_MUC, "x")
    x.append(element(NS_MUC, "history", maxstanzas=str(history)))
    return x


@dataclass
class MucPresence:
    room: str
    nick: str
    type: str
    codes: set[str]
    real_jid: str | None
    new_nick: str | None
    error: str | None


def read_muc_presence(xml: ET.Element, room: str, nick: str, ptype: str) -> MucPresence:
    codes: set[str] = set()
    real_jid = new_nick = error = None
    x = child(xml, NS_MUC_USER, "x")
    if x is not None:
        codes = {s.get("code", "") for s in x.findall(f"{{{NS_MUC_USER}}}status")}
        item = x.find(f"{{{NS_MUC_USER}}}item")
        if item is not None:
            real_jid = item.get("jid")
            new_nick = item.get("nick")
    if ptype == "error":
        err = xml.find("{jabber:component:accept}error")
        if err is None:
            err = xml.find("error")
        error = err[0].tag.rsplit("}", 1)[-1] if err is not None and len(err) else "error"
    return MucPresence(room, nick, ptype, codes, real_jid, new_nick, error)


def read_slot(xml: ET.Element) -> tuple[str | None, str | None, dict[str, str]]:
    """(PUT URL, GET URL, PUT headers) of an XEP-0363 upload slot."""
    slot = xml.find(f"{{{NS_UPLOAD}}}slot")
    if slot is None:
        return None, None, {}
    put, get = slot.find(f"{{{NS_UPLOAD}}}put"), slot.find(f"{{{NS_UPLOAD}}}get")
    headers = {}
    if put is not None:
        for header in put.findall(f"{{{NS_UPLOAD}}}header"):
            name = header.get("name", "")
            if name in ("Authorization", "Cookie", "Expires"):
                headers[name] = (header.text or "").strip()
    return (
        put.get("url") if put is not None else None,
        get.get("url") if get is not None else None,
        headers,
    )


def occupant_id(xml: ET.Element) -> str | None:
    """The room's stable, anonymous ID of an occupant (XEP-0421), if it gives one."""
    el = child(xml, NS_OCCUPANT_ID, "occupant-id")
    return el.get("id") if el is not None and el.get("id") else None


def muc_user_jid(xml: ET.Element) -> str | None:
    """The sender's real address a room shows in a message (``<x muc#user><item jid>``)."""
    x = child(xml, NS_MUC_USER, "x")
    item = x.find(f"{{{NS_MUC_USER}}}item") if x is not None else None
    return item.get("jid") if item is not None and item.get("jid") else None


def has_subject(xml: ET.Element) -> bool:
    return any(el.tag == "subject" or el.tag.endswith("}subject") for el in xml)
