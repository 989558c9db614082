"""The XML of WebDAV (RFC 4918): reading request bodies, writing multistatus answers.

Answers are written as text with the ``D:`` prefix for ``DAV:`` and no default
namespace, so that a client's dead property in no namespace stays in none when it is
embedded as it was stored (each stored property carries its own namespace
declarations)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html import escape

DAV = "DAV:"
MAX_BODY = 1 << 20


class BadXml(ValueError):
    """A request body that is not the XML the method expects."""


def parse(body: bytes) -> ET.Element | None:
    if not body.strip():
        return None
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadXml(f"the request body is not well-formed XML: {exc}") from exc


def split_tag(tag: str) -> tuple[str, str]:
    """``{ns}name`` → ``(ns, name)``; no namespace → ``("", name)``."""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def tag_of(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}" if ns else name


def element_text(elem: ET.Element) -> str:
    """An element as self-contained XML text (its namespaces declared in it)."""
    return ET.tostring(elem, encoding="unicode")


def empty_element(ns: str, name: str) -> str:
    if ns == DAV:
        return f"<D:{name}/>"
    return element_text(ET.Element(tag_of(ns, name)))


def esc(text: str) -> str:
    return escape(text, quote=False)


def multistatus(responses: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
        + "".join(responses)
        + "</D:multistatus>"
    ).encode("utf-8")


def response(href: str, propstats: list[tuple[int, list[str]]], why: str = "") -> str:
    """One ``<D:response>`` with a ``<D:propstat>`` per status that has properties, and
    ``why`` as its description."""
    parts = [f"<D:response><D:href>{esc(href)}</D:href>"]
    for status, props in propstats:
        if props:
            parts.append(
                f"<D:propstat><D:prop>{''.join(props)}</D:prop>"
                f"<D:status>HTTP/1.1 {status} {REASONS.get(status, '')}</D:status></D:propstat>"
            )
    if why:
        parts.append(f"<D:responsedescription>{esc(why)}</D:responsedescription>")
    parts.append("</D:response>")
    return "".join(parts)


def status_response(href: str, status: int, error: str | None = None) -> str:
    extra = f"<D:responsedescription>{esc(error)}</D:responsedescription>" if error else ""
    return (
        f"<D:response><D:href>{esc(href)}</D:href>"
        f"<D:status>HTTP/1.1 {status} {REASONS.get(status, '')}</D:status>{extra}</D:response>"
    )


def error_body(condition: str, hrefs: list[str] = (), message: str = "") -> bytes:
    """A ``<D:error>`` body with a precondition element (e.g. ``lock-token-submitted``)."""
    inner = "".join(f"<D:href>{esc(h)}</D:href>" for h in hrefs)
    text = f"<D:responsedescription>{esc(message)}</D:responsedescription>" if message else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="DAV:">'
        f"<D:{condition}>{inner}</D:{condition}>{text}</D:error>"
    ).encode()


REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    423: "Locked",
    424: "Failed Dependency",
    507: "Insufficient Storage",
}
