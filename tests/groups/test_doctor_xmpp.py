"""``anywhere doctor`` tells an operator whether the XMPP server takes the bridge as its
component — against a real Prosody, before the bridge ever runs."""

from __future__ import annotations

import asyncio
import hashlib

from anywhere.plugins.groups.xmpp.doctor import check_component


def settings(prosody, **changes):
    return {
        "host": "127.0.0.1",
        "port": prosody.component_port,
        "component_jid": prosody.component,
        "secret": prosody.secret,
    } | changes


async def test_the_right_secret_is_accepted(prosody):
    (check,) = await check_component(settings(prosody))
    assert (check.status, check.name) == ("ok", "xmpp"), check
    assert f"accepted the component {prosody.component} and its secret" in check.text


async def test_a_wrong_secret_is_named_with_where_to_look(prosody):
    (check,) = await check_component(settings(prosody, secret="not-it"))
    assert check.status == "fail"
    assert check.text == f"the XMPP server refused the secret for {prosody.component}"
    assert "component_secret" in check.fix and "plugins.settings.groups.xmpp.secret" in check.fix


async def test_a_component_the_server_does_not_have(prosody):
    (check,) = await check_component(settings(prosody, component_jid="bridge.nowhere.example"))
    assert check.status == "fail"
    assert "has no component bridge.nowhere.example" in check.text
    assert 'Component "bridge.nowhere.example"' in check.fix


async def test_the_wrong_port_or_no_server(prosody):
    (client_port,) = await check_component(settings(prosody, port=prosody.c2s_port))
    assert client_port.status == "fail", client_port
    assert "is not a component port (the server speaks jabber:client there)" in client_port.text
    (closed,) = await check_component(settings(prosody, port=1))
    assert closed.status == "fail"
    assert "cannot connect to the XMPP server's component port 127.0.0.1:1" in closed.text
    assert "component_ports" in closed.fix


async def test_while_the_bridge_is_connected_the_secret_is_still_checked(prosody):
    # hold the component's connection, as a running bridge does
    reader, writer = await asyncio.open_connection("127.0.0.1", prosody.component_port)
    try:
        writer.write(
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='"
            + prosody.component.encode()
            + b"'>"
        )
        header = (await reader.readuntil(b">")).decode()
        while "id=" not in header:
            header += (await reader.readuntil(b">")).decode()
        stream_id = header.split("id=")[1][1:].split(header.split("id=")[1][0])[0]
        digest = hashlib.sha1((stream_id + prosody.secret).encode()).hexdigest()
        writer.write(f"<handshake>{digest}</handshake>".encode())
        assert b"<handshake" in await asyncio.wait_for(reader.read(4096), 5)

        (check,) = await check_component(settings(prosody))
        assert check.status == "ok", check
        assert "connected already" in check.text
        (wrong,) = await check_component(settings(prosody, secret="not-it"))
        assert wrong.status == "fail" and "refused the secret" in wrong.text
    finally:
        writer.close()


async def test_linked_rooms_are_checked_for_an_archive_and_its_defaults_are_named(prosody):
    from anywhere.plugins.groups.xmpp.testing import XmppPerson

    person = XmppPerson(f"alice@{prosody.domain}", "alice-password", prosody.c2s_port)
    await person.connect()
    try:
        room = f"doctor-archive@{prosody.muc}"
        await person.join(room, "Alice D")
        component, archive = await check_component(settings(prosody), [room])
        assert component.status == "ok"
        assert (archive.status, archive.name) == ("ok", "xmpp archive"), archive
        assert "one week" in archive.text and "50 messages per query" in archive.text

        # an address that keeps no archive (the test Prosody's upload service)
        component, archive = await check_component(settings(prosody), [room, prosody.upload])
        assert archive.status == "warn"
        assert f"1 of 2 linked rooms keep no message archive (XEP-0313): {prosody.upload}" in (
            archive.text
        )
        assert "muc_mam" in archive.fix
    finally:
        await person.close()
