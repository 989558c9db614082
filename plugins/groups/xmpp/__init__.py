"""The XMPP connector: the bridge as an external component of the XMPP server."""

from .connector import XmppConnector

__all__ = ["XmppConnector"]
