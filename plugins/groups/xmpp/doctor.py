"""``anywhere doctor``'s check of the XMPP connector: the XMPP server takes the bridge as
its component (XEP-0114 handshake with the secret); then, if the bridge is not running
(the server takes one connection per component), whether each linked room keeps an
archive (XEP-0313), which the bridge catches up from after a restart; then the
connection is closed."""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import quoteattr

from anywhere.bridge.doctor import DoctorCheck

NAME = "xmpp"
STREAMS = "{http://etherx.jabber.org/streams}"
COMPONENT = "{jabber:component:accept}"
ERRORS = "{urn:ietf:params:xml:ns:xmpp-streams}"
TIMEOUT = 10.0


class _Stream:
    """The server's side of one component stream, read element by element."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = ET.XMLPullParser(events=("start-ns", "start", "end"))
        self.depth = 0
        self.namespaces: dict[str, str] = {}  # declared on the server's stream header

    async def next(self) -> tuple[str, ET.Element]:
        """("open", <stream:stream>) once, then ("element", each top-level element)."""
        while True:
            for event, element in self.parser.read_events():
                if event == "start-ns":
                    if self.depth == 0:
                        prefix, uri = element
                        self.namespaces[prefix] = uri
                elif event == "start":
                    self.depth += 1
                    if self.depth == 1:
                        return "open", element
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        return "element", element
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.parser.feed(data)


def _stream_error(element: ET.Element) -> str:
    conditions = [
        child.tag.removeprefix(ERRORS) for child in element if child.tag != ERRORS + "text"
    ]
    text = element.findtext(ERRORS + "text") or ""
    return (conditions[0] if conditions else "unknown") + (f" ({text})" if text else "")


ARCHIVE = "xmpp archive"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MAM = "urn:xmpp:mam:2"
ARCHIVE_NOTE = (
    "Prosody keeps archived messages one week by default (muc_log_expires_after): a "
    "bridge down for longer loses what was said before the oldest one; it answers 50 "
    "messages per query (max_archive_query_results), and the bridge asks page by page"
)


async def check_component(
    settings: dict[str, Any], rooms: list[str] | None = None
) -> list[DoctorCheck]:
    """The component check, and (``rooms``: the linked rooms) the archive check."""
    archives: list[DoctorCheck] = []
    component = await _check_component(settings, rooms or [], archives)
    return [component, *archives]


async def _check_component(
    settings: dict[str, Any], rooms: list[str], archives: list[DoctorCheck]
) -> DoctorCheck:
    host, port, domain = settings["host"], settings["port"], settings["component_jid"]
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return DoctorCheck.fail(
            NAME,
            f"cannot connect to the XMPP server's component port {where} ({exc})",
            "start the XMPP server, or set plugins.settings.groups.xmpp.host and port to "
            "where it listens for components (Prosody: component_ports)",
        )
    try:
        return await asyncio.wait_for(
            _handshake(reader, writer, domain, settings, rooms, archives), TIMEOUT
        )
    except (OSError, ConnectionError, ET.ParseError, TimeoutError) as exc:
        return DoctorCheck.fail(
            NAME,
            f"{where} does not speak the component protocol ({type(exc).__name__}: {exc})",
            "point plugins.settings.groups.xmpp.port at the server's component port, not "
            "its client or server port",
        )
    finally:
        writer.close()


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    domain: str,
    settings: dict[str, Any],
    rooms: list[str],
    archives: list[DoctorCheck],
) -> DoctorCheck:
    writer.write(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to=" + quoteattr(domain).encode() + b">"
    )
    stream = _Stream(reader)
    kind, element = await stream.next()
    spoken = stream.namespaces.get("", COMPONENT[1:-1])
    if spoken != COMPONENT[1:-1]:
        return DoctorCheck.fail(
            NAME,
            f"{settings['host']}:{settings['port']} is not a component port (the server "
            f"speaks {spoken} there)",
            "set plugins.settings.groups.xmpp.port to the server's component port "
            "(Prosody: component_ports, 5347 by default)",
        )
    if kind == "element" and element.tag == STREAMS + "error":
        return _refused(domain, _stream_error(element))
    stream_id = element.get("id")
    if not stream_id:
        kind, element = await stream.next()
        if element.tag == STREAMS + "error":
            return _refused(domain, _stream_error(element))
        raise ConnectionError("no stream id from the server")
    digest = hashlib.sha1((stream_id + settings["secret"]).encode()).hexdigest()
    writer.write(f"<handshake>{digest}</handshake>".encode())
    kind, element = await stream.next()
    if element.tag == COMPONENT + "handshake":
        if rooms:
            archives.append(await _check_archives(stream, writer, domain, rooms))
        writer.write(b"</stream:stream>")
        return DoctorCheck.ok(
            NAME, f"the XMPP server accepted the component {domain} and its secret"
        )
    if element.tag == STREAMS + "error":
        return _refused(domain, _stream_error(element))
    raise ConnectionError(f"unexpected answer to the handshake: {element.tag}")


async def _check_archives(
    stream: _Stream, writer: asyncio.StreamWriter, domain: str, rooms: list[str]
) -> DoctorCheck:
    """Ask each linked room (disco#info) whether it keeps an archive."""
    without = []
    for n, room in enumerate(rooms):
        writer.write(
            f"<iq type='get' id='doctor{n}' from={quoteattr(domain)} to={quoteattr(room)}>"
            f"<query xmlns='{NS_DISCO_INFO}'/></iq>".encode()
        )
        while True:
            _, element = await stream.next()
            if element.tag == COMPONENT + "iq" and element.get("id") == f"doctor{n}":
                break
        features = {f.get("var") for f in element.iter(f"{{{NS_DISCO_INFO}}}feature")}
        if NS_MAM not in features:
            without.append(room)
    if without:
        return DoctorCheck.warn(
            ARCHIVE,
            f"{len(without)} of {len(rooms)} linked rooms keep no message archive "
            f"(XEP-0313): {', '.join(without)}; after a restart the bridge catches up "
            "there from the join history only, so messages are lost when more was said "
            "than the room's history keeps",
            'enable the archive: modules_enabled = { "muc_mam" } under the MUC component '
            "in Prosody's config (and archiving in each room's settings)",
        )
    return DoctorCheck.ok(
        ARCHIVE,
        f"all {len(rooms)} linked rooms keep a message archive, which the bridge catches up "
        f"from after a restart. {ARCHIVE_NOTE}",
    )


def _refused(domain: str, condition: str) -> DoctorCheck:
    if condition.startswith("conflict"):
        # the server checks the secret first, then refuses a second connection
        return DoctorCheck.ok(
            NAME,
            f"the XMPP server accepted the secret for {domain}; the component is connected "
            "already (the bridge is running)",
        )
    if condition.startswith("not-authorized"):
        return DoctorCheck.fail(
            NAME,
            f"the XMPP server refused the secret for {domain}",
            "plugins.settings.groups.xmpp.secret must equal the component_secret of "
            f'Component "{domain}" in the server\'s config',
        )
    if condition.startswith("host-unknown"):
        return DoctorCheck.fail(
            NAME,
            f"the XMPP server has no component {domain}",
            f'add Component "{domain}" with a component_secret to the server\'s config, '
            "or fix plugins.settings.groups.xmpp.component_jid",
        )
    return DoctorCheck.fail(NAME, f"the XMPP server refused the component {domain}: {condition}")
