"""The decryption process (encryption.decrypt_worker): a stored transaction's encrypted
events are decrypted there ahead of dispatch, every check stays in the bridge (a replay
under another event id is refused, a forgery is not dispatched), and the process dying
with a transaction in its hands loses nothing: that transaction is decrypted in the
bridge, a line says so, and the next one goes to a new process."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_asyncio
import structlog
import vodozemac

from anywhere.bridge.crypto import machine as machine_module
from anywhere.bridge.crypto.machine import MEGOLM
from anywhere.bridge.crypto.service import Encryption
from anywhere.bridge.events import MatrixEvent
from anywhere.bridge.schema import CORE_MIGRATIONS
from anywhere.storage import open_database, run_migrations

from .test_replay_claims import ROOM, encrypted_event

BOT = "@bot:example.org"


def encryption(decrypt_worker: object = True) -> Encryption:
    return Encryption(
        secret="a secret",
        device_id="BOTDEV",
        user_id=BOT,
        homeserver_url="http://unused",
        as_token="token",
        display_name="bot",
        is_ours=lambda user_id: user_id == BOT,
        http=lambda: None,
        decrypt_worker=decrypt_worker,
    )


class Setup:
    """A database, the encryption opened on it with a room key from a person, and what
    reached the plugins."""

    def __init__(self, db, enc: Encryption) -> None:
        self.db, self.enc = db, enc
        self.seen: list[str] = []
        self.person, self.outbound = vodozemac.Account(), vodozemac.GroupSession()
        self.sender_key = self.person.curve25519_key.to_base64()
        self.count = 0

    async def dispatch(self, event: MatrixEvent) -> None:
        assert (event.raw.get("unsigned") or {}).get("io.anywhere.encrypted")
        self.seen.append(event.content.get("body", event.type))

    async def open(self) -> None:
        await run_migrations(self.db, [CORE_MIGRATIONS, self.enc.migrations])
        await self.enc.open(self.db, self.dispatch)
        self.enc.ready = True  # as after the start-up probe
        await self.enc.machine.add_room_key(
            {
                "type": "m.room_key",
                "sender_key": self.sender_key,
                "keys": {"ed25519": self.person.ed25519_key.to_base64()},
                "content": {
                    "algorithm": MEGOLM,
                    "room_id": ROOM,
                    "session_id": self.outbound.session_id,
                    "session_key": self.outbound.session_key.to_base64(),
                },
            }
        )

    def events(self, n: int) -> list[dict]:
        made = [encrypted_event(self.outbound, self.sender_key, self.count + i) for i in range(n)]
        self.count += n
        return made


@pytest_asyncio.fixture(loop_scope="function")
async def setup(anywhere_database_url):
    db = await open_database(anywhere_database_url)
    made = Setup(db, encryption())
    try:
        await made.open()
        yield made
    finally:
        await made.enc.stop()
        await db.stop()


@pytest.fixture
def decrypted_here(monkeypatch) -> list[str]:
    """The ciphertexts decrypted in the bridge's own process."""
    calls: list[str] = []
    original = machine_module.SealedMegolm.open

    def counting(self):
        calls.append(self.ciphertext)
        return original(self)

    monkeypatch.setattr(machine_module.SealedMegolm, "open", counting)
    return calls


@pytest.mark.asyncio(loop_scope="function")
async def test_the_process_decrypts_ahead_and_the_bridge_still_checks(setup, decrypted_here):
    enc = setup.enc
    good = setup.events(3)
    replay = dict(good[1], event_id="$replayed")  # same message, another event id
    forged = setup.events(1)[0]
    text = forged["content"]["ciphertext"]
    middle = len(text) // 2
    flipped = "A" if text[middle] != "A" else "B"
    forged["content"]["ciphertext"] = text[:middle] + flipped + text[middle + 1 :]
    later = setup.events(1)
    with structlog.testing.capture_logs() as logs:
        for events in ([*good, replay, forged], later):
            await enc.ahead({"events": events})  # as the inbox does when it stores them
        for event in [*good, replay, forged, *later]:
            await enc.dispatch(MatrixEvent(event), setup.dispatch)
    assert setup.seen == ["m0", "m1", "m2", "m4"]
    assert enc.decryptor.pid is not None
    # only the forgery was decrypted again in the bridge (the process could not)
    assert decrypted_here == [forged["content"]["ciphertext"]]
    refused = {e.get("event_id"): e.get("reason") for e in logs if e.get("event_id")}
    assert "replayed" in refused["$replayed"]
    assert "does not verify" in refused[forged["event_id"]]


@pytest.mark.asyncio(loop_scope="function")
async def test_the_process_dying_with_a_transaction_loses_nothing(setup, decrypted_here):
    enc = setup.enc
    first = setup.events(5)
    await enc.ahead({"events": first})  # starts the process
    for event in first:
        await enc.dispatch(MatrixEvent(event), setup.dispatch)
    old = enc.decryptor.pid
    assert old is not None and decrypted_here == []
    os.kill(old, signal.SIGSTOP)  # it cannot answer the next transaction...
    in_hands = setup.events(5)
    with structlog.testing.capture_logs() as logs:
        await enc.ahead({"events": in_hands})
        os.kill(old, signal.SIGKILL)  # ...and dies with it
        for event in in_hands:
            await enc.dispatch(MatrixEvent(event), setup.dispatch)
    assert setup.seen == [f"m{n}" for n in range(10)]
    assert decrypted_here == [e["content"]["ciphertext"] for e in in_hands]
    assert any("decryption process unavailable" in e["event"] for e in logs)
    # the next transaction goes to a new process
    decrypted_here.clear()
    after = setup.events(3)
    await enc.ahead({"events": after})
    for event in after:
        await enc.dispatch(MatrixEvent(event), setup.dispatch)
    assert setup.seen[10:] == ["m10", "m11", "m12"]
    assert enc.decryptor.pid not in (None, old)
    assert decrypted_here == []


def test_the_setting_must_be_true_false_or_null():
    from anywhere.bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="decrypt_worker"):
        encryption("yes")
    assert encryption(None).decrypt_worker == ((os.cpu_count() or 1) > 1)
    assert encryption(False).decrypt_worker is False
