"""The connector contract, ghost IDs and message conversion, without a network."""

from __future__ import annotations

import pytest

from anywhere.plugins.groups import commands
from anywhere.plugins.groups.connector import (
    Connector,
    Message,
    Portal,
    capabilities,
    check_connector,
)
from anywhere.plugins.groups.convert import (
    edit_target,
    matrix_to_message,
    message_to_content,
    strip_reply_fallback,
)
from anywhere.plugins.groups.ghosts import clean_name, escape, unescape


class TextOnly(Connector):
    network = "textonly"

    async def start(self, hub, settings):
        pass

    async def stop(self):
        pass

    async def connect(self, portal):
        pass

    async def handle_matrix_message(self, portal, sender, message):
        return "remote-1"


class WithEditsAndLinks(TextOnly):
    network = "rich"

    async def handle_matrix_edit(self, portal, sender, target, message):
        return "remote-2"

    async def resolve_group(self, address):
        return address, address

    async def disconnect(self, portal):
        pass


def test_a_connector_missing_a_required_method_cannot_be_made():
    class Incomplete(Connector):
        network = "broken"

        async def start(self, hub, settings):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_capabilities_are_detected_one_by_one():
    assert capabilities(TextOnly()) == frozenset()
    assert capabilities(WithEditsAndLinks()) == {"edits", "group_linking"}


def test_check_connector_names_the_plugin_that_gave_something_else():
    with pytest.raises(TypeError, match="plugin 'acme'"):
        check_connector(object(), "acme")
    assert check_connector(TextOnly(), "acme").network == "textonly"


class FakeHub:
    def __init__(self, connectors):
        self.connectors = connectors

    def linkable_networks(self):
        return [n for n, c in self.connectors.items() if "group_linking" in capabilities(c)]


class FakePlugin:
    def __init__(self, hub):
        self.hub = hub


def test_link_commands_are_hidden_unless_a_connector_links_groups():
    plain = commands.build(FakePlugin(FakeHub({"textonly": TextOnly()})))[0]
    assert [s.name for s in plain.listed_subcommands()] == ["create", "add", "remove", "list"]
    assert "link" not in plain.parser().format_help()
    rich = commands.build(FakePlugin(FakeHub({"rich": WithEditsAndLinks()})))[0]
    assert [s.name for s in rich.listed_subcommands()][-2:] == ["link", "unlink"]
    assert rich.parse(["link", "rich:room"]).address == "rich:room"


@pytest.mark.parametrize(
    "remote_id",
    ["alice@example.org", "Room@conference.example.org/Ünïcode Nick", "a=b_c.d-e", "東京"],
)
def test_ghost_localparts_are_valid_and_reversible(remote_id):
    localpart = escape(remote_id)
    assert all(c.isascii() and (c.islower() or c.isdigit() or c in "._-=") for c in localpart)
    assert unescape(localpart) == remote_id


def test_display_names_lose_control_characters_and_are_bounded():
    assert clean_name("Ana\u202e\x00 Kim\n", "fallback") == "Ana Kim"
    assert clean_name("\x07", "fallback") == "fallback"
    assert len(clean_name("x" * 1000, "f")) == 100


def test_reply_fallback_and_edits_are_understood():
    body = "> <@ana:localhost> the quote\n> more\n\nmy answer"
    assert strip_reply_fallback(body) == "my answer"
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
    }
    assert edit_target(content) == "$orig"
    assert matrix_to_message("$edit", content).text == "fixed"


def test_locations_convert_both_ways_and_nonsense_coordinates_are_dropped():
    message = matrix_to_message(
        "$loc", {"msgtype": "m.location", "body": "Office", "geo_uri": "geo:37.5665,126.978"}
    )
    assert (message.location.latitude, message.location.longitude) == (37.5665, 126.978)
    content = message_to_content(message)
    assert content["msgtype"] == "m.location"
    assert content["geo_uri"] == "geo:37.566500,126.978000"
    bad = matrix_to_message("$x", {"msgtype": "m.location", "body": "x", "geo_uri": "geo:99,0"})
    assert bad.location is None


def test_formatted_text_keeps_its_html_without_the_reply_quote():
    message = matrix_to_message(
        "$1",
        {
            "msgtype": "m.text",
            "body": "hi",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply>quoted</mx-reply><b>hi</b>",
        },
    )
    assert message.html == "<b>hi</b>"
    assert message_to_content(Message("r1", "hi", "<b>hi</b>"))["formatted_body"] == "<b>hi</b>"


def test_a_portal_knows_its_kind():
    assert Portal("xmpp", "room@conference.localhost", "!r").kind == "group"


def test_the_xmpp_connector_declares_reactions_typing_and_read_markers():
    from anywhere.plugins.groups.xmpp.connector import XmppConnector

    declared = capabilities(XmppConnector())
    assert {"reactions", "typing", "read_markers"} <= declared
    assert not {"reactions", "typing", "read_markers"} & capabilities(WithEditsAndLinks())
