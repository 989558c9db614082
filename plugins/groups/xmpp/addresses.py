"""Who is who on the bridge's XMPP component: a Matrix person's own address there
(``alice=3aexample.org@matrix.example.org/matrix``), the Matrix person behind such an
address, and the relay occupant's."""

from __future__ import annotations

from slixmpp import JID

from ..ghosts import escape, unescape

NETWORK = "xmpp"
RELAY_NODE = "bridge"


class XmppAddresses:
    def __init__(self, domain: str, matrix_domain: str) -> None:
        self.domain = domain  # the component's
        self.matrix_domain = matrix_domain  # the homeserver's
        self.relay_jid = f"{RELAY_NODE}@{domain}/relay"

    def puppet_jid(self, user_id: str) -> str:
        return f"{escape(user_id.removeprefix('@'))}@{self.domain}/matrix"

    def matrix_user_of(self, jid: JID) -> str | None:
        if jid.domain != self.domain or not jid.user or jid.user == RELAY_NODE:
            return None
        try:
            localpart, _, server = unescape(jid.user).partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if server != self.matrix_domain or not localpart:
            return None
        return f"@{localpart}:{server}"
