"""The folder room's way to the web app: a "Files" room widget (the
``im.vector.modular.widgets`` state event Element reads) and, for clients without
widgets (Element X), the standalone page's address in the room's topic."""

from __future__ import annotations

from typing import Any

from anywhere.bridge.api import Host

WIDGET_EVENT = "im.vector.modular.widgets"
WIDGET_STATE_KEY = "anywhere_drive_files"
APP_PATH = "/_anywhere/drive/app/"


def app_url(bridge: Host, public_url: str) -> str:
    """The standalone page (``public_url`` of the drive, else the bridge's own address)."""
    return (public_url or bridge.info.bridge_url).rstrip("/") + APP_PATH


def widget_state(bridge: Host, public_url: str, name: str) -> dict[str, Any]:
    """The widget's state event, for ``create_room(initial_state=...)``. Element fills in
    ``$matrix_room_id`` and adds ``widgetId`` and ``parentUrl`` to the address itself;
    the page finds the folder by its room."""
    return {
        "type": WIDGET_EVENT,
        "state_key": WIDGET_STATE_KEY,
        "content": {
            "type": "m.custom",
            "url": f"{app_url(bridge, public_url)}?widget=1&room=$matrix_room_id",
            "name": "Files",
            "id": WIDGET_STATE_KEY,
            "creatorUserId": bridge.info.bot_user_id,
            "data": {"title": f"{name} (drive)"},
        },
    }
