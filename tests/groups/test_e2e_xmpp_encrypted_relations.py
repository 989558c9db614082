"""Edits, redactions and replies from an encrypted group room to XMPP (issue 16): the
Matrix person's client encrypts them (matrix-nio with vodozemac), the bridge decrypts
them and the XMPP person gets a correction (XEP-0308), a retraction (XEP-0424) and a
reply (XEP-0461) of the bridged message. Real Prosody, real Synapse, the bridge as a
process. Files the same way: test_e2e_xmpp_encrypted_files.py."""

from __future__ import annotations

import pytest

from .test_e2e_xmpp import answer_id, child_of, text_from
from .test_e2e_xmpp_encrypted_files import (  # noqa: F401
    encrypted_boss,
    encrypted_linked_group,
    wire_type,
)

pytestmark = pytest.mark.e2e

CORRECT = "urn:xmpp:message-correct:0"
RETRACT = "urn:xmpp:message-retract:1"
REPLY = "urn:xmpp:reply:0"


async def send_encrypted(boss, room_id: str, content: dict) -> dict:
    """Send ``content`` as the boss's client does (encrypted); the event as the homeserver
    holds it, checked to be encrypted."""
    from nio import RoomSendResponse

    response = await boss.client.room_send(
        room_id, "m.room.message", content, ignore_unverified_devices=True
    )
    assert isinstance(response, RoomSendResponse), response
    raw = await wire_type(boss, room_id, response.event_id)
    assert raw["type"] == "m.room.encrypted", raw
    return raw


async def test_an_encrypted_edit_redaction_and_reply_reach_xmpp_as_their_stanzas(
    xmpp_stack,
    prosody,
    xmpp_person,
    encrypted_boss,  # noqa: F811
):
    erin = await xmpp_person("erin")
    boss = encrypted_boss
    room, room_id = await encrypted_linked_group(xmpp_stack, boss, erin, "Erin E", prosody)

    # an edit (m.replace, encrypted) → a correction of the bridged message
    mark = erin.mark()
    sent = await boss.send_text(room_id, "budget is 5M")
    bridged = await erin.wait_for(lambda m: m["body"] == "budget is 5M", start=mark)
    edit = await send_encrypted(
        boss,
        room_id,
        {
            "msgtype": "m.text",
            "body": "* budget is 6M",
            "m.new_content": {"msgtype": "m.text", "body": "budget is 6M"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent},
        },
    )
    # what went to the homeserver: the relation, not the new text (base64 has no spaces)
    assert "m.new_content" not in edit["content"]
    assert "budget is 6M" not in str(edit["content"])
    corrected = await erin.wait_for(lambda m: m["body"] == "budget is 6M", start=mark)
    replace = child_of(corrected, CORRECT, "replace")
    assert replace is not None and replace.get("id") == bridged["id"]

    # a reply (m.in_reply_to, encrypted) to an XMPP person's message → a reply to it,
    # without the quote Matrix clients put in the body
    erin.send(room, "numbers are in the sheet", "groupchat")
    said = await boss.wait_for(room_id, text_from(body="numbers are in the sheet"))
    assert said.get("decrypted") is True
    await send_encrypted(
        boss,
        room_id,
        {
            "msgtype": "m.text",
            "body": "> <@x:localhost> numbers are in the sheet\n\nthanks, Erin",
            "m.relates_to": {"m.in_reply_to": {"event_id": said["event_id"]}},
        },
    )
    thanks = await erin.wait_for(lambda m: m["body"] == "thanks, Erin", start=mark)
    reply = child_of(thanks, REPLY, "reply")
    assert reply is not None
    assert reply.get("id") == answer_id(erin, "numbers are in the sheet")

    # a redaction of the edited message → a retraction of the bridged one
    await boss.client.room_redact(room_id, sent)
    retraction = await erin.wait_for(
        lambda m: child_of(m, RETRACT, "retract") is not None, start=mark
    )
    assert child_of(retraction, RETRACT, "retract").get("id") == bridged["id"]
    assert not boss.undecryptable.get(room_id)
