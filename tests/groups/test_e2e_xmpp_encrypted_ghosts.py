"""Ghosts in an encrypted group room (issue 16): an XMPP person's messages, corrections,
replies and files reach the encrypted Matrix room encrypted by the ghost's own device,
and the Matrix person's client decrypts them; retractions redact them. Real Prosody,
real Synapse, the bridge as a process, a Matrix person whose client encrypts (matrix-nio
with vodozemac)."""

from __future__ import annotations

import pytest
from nio import DownloadResponse
from nio.crypto.attachments import decrypt_attachment

from .test_e2e_xmpp import PNG, share_link, text_from, upload_from_xmpp, xml
from .test_e2e_xmpp_encrypted_files import (  # noqa: F401
    encrypted_boss,
    encrypted_linked_group,
    wire_type,
)

CORRECT = "urn:xmpp:message-correct:0"
RETRACT = "urn:xmpp:message-retract:1"
REPLY = "urn:xmpp:reply:0"

pytestmark = pytest.mark.e2e


async def test_an_xmpp_persons_message_reaches_the_encrypted_room_encrypted_by_its_ghost(
    xmpp_stack,
    prosody,
    xmpp_person,
    encrypted_boss,  # noqa: F811
):
    carol = await xmpp_person("carol")
    room, room_id = await encrypted_linked_group(
        xmpp_stack, encrypted_boss, carol, "Carol E", prosody
    )
    mark = encrypted_boss.mark(room_id)
    carol.send(room, "hello encrypted room", "groupchat")
    event = await encrypted_boss.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.message" and e["content"].get("body") == "hello encrypted room"
        ),
        start=mark,
    )
    ghost = event["sender"]
    assert ghost.startswith("@anywhere_xmpp_") and ghost != xmpp_stack.bot_id
    assert event.get("decrypted") is True  # sent encrypted, and the boss's client read it
    assert not encrypted_boss.undecryptable.get(room_id)


async def test_corrections_retractions_replies_and_files_from_xmpp_arrive_encrypted(
    xmpp_stack,
    prosody,
    xmpp_person,
    encrypted_boss,  # noqa: F811
):
    dave = await xmpp_person("dave")
    boss = encrypted_boss
    room, room_id = await encrypted_linked_group(xmpp_stack, boss, dave, "Dave E", prosody)

    async def arrived(predicate, mark):
        event = await boss.wait_for(room_id, predicate, start=mark)
        assert event.get("decrypted") is True, event  # the boss's client decrypted it
        raw = await wire_type(boss, room_id, event["event_id"])
        assert raw["type"] == "m.room.encrypted", raw
        assert raw["sender"] == event["sender"] != xmpp_stack.bot_id
        return event, raw

    # text
    mark = boss.mark(room_id)
    first = dave.send(room, "meet at 9", "groupchat")
    original, _ = await arrived(text_from(body="meet at 9"), mark)
    ghost = original["sender"]
    assert ghost.startswith("@anywhere_xmpp_")

    # a correction (XEP-0308) → an encrypted m.replace; the relation stays readable to
    # the homeserver (it aggregates edits), the new text does not
    mark = boss.mark(room_id)
    dave.send(room, "meet at 10", "groupchat", extra=[xml(CORRECT, "replace", id=first)])
    edit, raw = await arrived(
        lambda e: e.get("content", {}).get("m.new_content", {}).get("body") == "meet at 10", mark
    )
    relation = {"rel_type": "m.replace", "event_id": original["event_id"]}
    assert edit["content"]["m.relates_to"] == relation
    assert raw["content"]["m.relates_to"] == relation
    assert "meet at 10" not in str(raw["content"])

    # a reply (XEP-0461) to the boss's message → m.in_reply_to, encrypted
    xmpp_mark = dave.mark()
    question = await boss.send_text(room_id, "who brings the slides?")
    bridged = await dave.wait_for(lambda m: m["body"] == "who brings the slides?", start=xmpp_mark)
    mark = boss.mark(room_id)
    dave.send(room, "I do", "groupchat", extra=[xml(REPLY, "reply", id=bridged["id"])])
    answer, _ = await arrived(text_from(sender=ghost, body="I do"), mark)
    assert answer["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == question

    # a file (HTTP upload, shared with OOB) → an encrypted attachment: `file`, no `url`
    mark = boss.mark(room_id)
    url = await upload_from_xmpp(dave, prosody, PNG, "chart.png", "image/png")
    share_link(dave, room, url)
    image, raw = await arrived(lambda e: e.get("content", {}).get("msgtype") == "m.image", mark)
    content = image["content"]
    assert "url" not in content, content
    assert content["info"]["mimetype"] == "image/png"
    file = content["file"]
    assert "chart.png" not in str(raw["content"])  # not even its name in the clear
    download = await boss.client.download(mxc=file["url"])
    assert isinstance(download, DownloadResponse), download
    assert download.body != PNG  # the media repository holds ciphertext
    plain = decrypt_attachment(
        download.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
    )
    assert plain == PNG

    # a retraction (XEP-0424) → a redaction by the ghost (redactions are never encrypted:
    # the homeserver must read what they redact), and the message's content is gone
    mark = boss.mark(room_id)
    second = dave.send(room, "oops, wrong room", "groupchat")
    wrong, _ = await arrived(text_from(body="oops, wrong room"), mark)
    dave.send(room, "retracted", "groupchat", extra=[xml(RETRACT, "retract", id=second)])
    redaction = await boss.wait_for(
        room_id,
        lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == wrong["event_id"],
        start=mark,
    )
    assert redaction["sender"] == ghost
    assert (await wire_type(boss, room_id, wrong["event_id"]))["content"] == {}
    assert not boss.undecryptable.get(room_id)
