"""Encryption under the send/receive services: the bot's device is set up at start-up;
the inbox hands each transaction's to-device, device-list and key-count parts here before
its room events; encrypted room events are decrypted before dispatch (or kept until their
room key arrives, in order with the rest of their room); the bot's sends into encrypted
rooms are encrypted (:class:`EncryptingAppServiceAPI`). Plugins see plain events and send
plain content, as in unencrypted rooms."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from mautrix.appservice import AppServiceAPI, IntentAPI
from mautrix.types import EventType
from mautrix.util.async_db import Database

from ..errors import ConfigError
from ..events import MatrixEvent
from .cross_signing import CrossSigning, CrossSigningRefused, CrossSigningSecrets
from .decryptor import MegolmDecryptor
from .homeserver import HomeserverRefused, KeysAPI
from .machine import MEGOLM, DecryptionError, MissingKey, OlmMachine, verify_signed
from .schema import CRYPTO_MIGRATIONS
from .store import CryptoStore, now_ms

log = structlog.get_logger("anywhere.crypto")
Dispatch = Callable[[MatrixEvent], Awaitable[None]]

#: Megolm rotation defaults (the spec's, used when m.room.encryption does not say).
ROTATION_MS = 7 * 24 * 3600 * 1000
ROTATION_MESSAGES = 100
#: How long an event waits for its room key before the bot gives up on it.
KEY_WAIT_SECONDS = 60.0
#: How long start-up waits for its probe to come back through a transaction.
PROBE_SECONDS = 30.0
PROBE_TYPE = "org.anywhere.probe"
SETTING_TO_DEVICE = (
    "the homeserver does not send to-device events to the bridge (Synapse: "
    "experimental_features.msc2409_to_device_messages_enabled: true; registration: "
    "receive_ephemeral: true)"
)
SETTING_KEY_COUNTS = (
    "the homeserver does not send one-time-key counts to the bridge (Synapse: "
    "experimental_features.msc3202_transaction_extensions: true; registration: "
    "org.matrix.msc3202: true)"
)
SETTING_DEVICES = (
    "the homeserver refused to create the bot's device (registration: "
    "io.element.msc4190: true, then restart the homeserver)"
)
TO_DEVICE_KEYS = ("to_device", "de.sorunome.msc2409.to_device")
DEVICE_LISTS_KEYS = ("device_lists", "org.matrix.msc3202.device_lists")
OTK_COUNT_KEYS = (
    "device_one_time_keys_count",
    "org.matrix.msc3202.device_one_time_keys_count",
    "org.matrix.msc3202.device_one_time_key_counts",
)
FALLBACK_KEYS = (
    "device_unused_fallback_key_types",
    "org.matrix.msc3202.device_unused_fallback_key_types",
)


def _first(body: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return None


def pickle_key(secret: str) -> bytes:
    """The 32-byte key vodozemac pickles with, from the config's secret."""
    return hashlib.sha256(("anywhere.crypto.pickle|" + secret).encode()).digest()


class Encryption:
    """The bot's device and its encryption; ``ready`` once the device is set up and the
    homeserver proved it delivers what encrypted rooms need (else ``unavailable`` says
    which setting is missing, and the bot keeps the plain-chat fallback)."""

    migrations = CRYPTO_MIGRATIONS

    def __init__(
        self,
        *,
        secret: str,
        device_id: str,
        user_id: str,
        homeserver_url: str,
        as_token: str,
        display_name: str,
        is_ours: Callable[[str], bool],
        http: Callable[[], aiohttp.ClientSession],
        key_wait_seconds: float = KEY_WAIT_SECONDS,
        decrypt_worker: bool | None = None,
    ) -> None:
        self.enabled = bool(secret)
        self._secret = secret
        self.user_id = user_id
        self.display_name = display_name
        self.is_ours = is_ours
        self.keys = KeysAPI(homeserver_url, as_token, user_id, device_id, http)
        self._as_token, self._http = as_token, http
        self.machine: OlmMachine | None = None
        # the bridge's other identities with a device of their own (memo/conference users,
        # ghosts): user id -> its machine, made when one first needs it (machine_of)
        self._machines: dict[str, OlmMachine] = {}
        self._identity_locks: dict[str, asyncio.Lock] = {}
        self.cross_signing: CrossSigning | None = None
        self.ready = False
        self.unavailable = "" if secret else "encryption.pickle_key is empty in the config"
        self._dispatch: Dispatch | None = None
        self._waiting_rooms: set[str] = set()
        self._room_encryption: dict[str, dict[str, Any] | None] = {}
        self._members: dict[str, list[str]] = {}
        self._room_locks: dict[str, asyncio.Lock] = {}
        # a room's queue of events waiting for keys: taken by the worker and by the expiry
        self._queue_locks: dict[str, asyncio.Lock] = {}
        self.key_wait_seconds = key_wait_seconds
        # Megolm decryption in a process of its own, ahead of dispatch (decryptor.py);
        # by default when there is another CPU to run it on
        if decrypt_worker is None:
            decrypt_worker = (os.cpu_count() or 1) > 1
        if not isinstance(decrypt_worker, bool):
            raise ConfigError("encryption.decrypt_worker", "true, false or null", decrypt_worker)
        self.decrypt_worker = decrypt_worker
        self.decryptor: MegolmDecryptor | None = None
        # room keys asked for: session id -> (room id, the user asked, the identity asking)
        self._requested: dict[str, tuple[str, str, str]] = {}
        # room id -> the identity of the bridge that reads it (see reader_of)
        self._readers: dict[str, str] = {}
        self._probe = asyncio.Event()
        self._probe_id = ""
        self.saw_key_counts = False

    # ----- start-up -----
    async def open(self, db: Database, dispatch: Dispatch) -> None:
        """With the database migrated: the store, and what decrypted events go to."""
        self._dispatch = dispatch
        if not self.enabled:
            return
        store = CryptoStore(db, pickle_key(self._secret))
        self.machine = OlmMachine(self.user_id, self.keys.device_id, store, self.keys)
        created = await self.machine.load_or_create()
        if self.decrypt_worker:
            self.decryptor = MegolmDecryptor(self.machine, self._raw_needs_key)
        self.keys.device_id = self.machine.device_id
        self._machines[self.user_id] = self.machine
        for user_id in await store.account_users():
            if user_id != self.user_id:  # its to-device events are handled from the start
                machine = self._new_machine(user_id)
                await machine.load_or_create()
                machine.keys.device_id = machine.device_id
                self._machines[user_id] = machine
        secrets = CrossSigningSecrets(db, pickle_key(self._secret), self.user_id)
        self.cross_signing = CrossSigning(secrets, self.keys)
        self._waiting_rooms = await store.waiting_rooms()
        log.info(
            "encryption account " + ("created" if created else "loaded"),
            device_id=self.machine.device_id,
        )
        # A device that worked before works from the first event on: a restart must never
        # send plain text into an encrypted room while the probe (start) is under way. The
        # probe still runs, and turns encryption off if the homeserver lost its settings.
        self.ready = not created and self.machine.shared

    async def start(self) -> None:
        """With the homeserver answering and the inbox running: the device (MSC4190),
        its keys, then a probe proving that to-device events and key counts arrive."""
        try:
            await self._start()
        except Exception as exc:
            self.unavailable = f"setting up the bot's device failed: {type(exc).__name__}"
            log.exception("encrypted rooms are off", reason=self.unavailable)
        if self.unavailable:
            self.ready = False
        else:
            await self._ask_again_for_waiting_keys()
            await self._expire_waiting_forever()
        if self.unavailable and self.machine is not None:
            # what was kept for its key goes on as it is (the core says it cannot read it)
            for room_id in list(self._waiting_rooms):
                for item in await self.machine.store.waiting_in(room_id):
                    await self._dispatch(MatrixEvent(item["event"], item["txn_id"], False))
                    await self.machine.store.done_waiting(item["seq"])
                self._waiting_rooms.discard(room_id)

    async def _start(self) -> None:
        if not self.enabled:
            log.warning("encrypted rooms are off", reason=self.unavailable)
            return
        try:
            await self.keys.create_device(self.display_name)
            counts = (await self.keys.upload({})).get("one_time_key_counts") or {}
            await self.machine.share_keys(counts.get("signed_curve25519", 0))
        except HomeserverRefused as exc:
            self.unavailable = SETTING_DEVICES if "device" in str(exc) else str(exc)
            log.error("encrypted rooms are off", reason=self.unavailable, error=str(exc))
            return
        await self._bootstrap_cross_signing()
        self._probe_id = f"{self.machine.device_id}.{now_ms()}"
        await self.keys.send_to_device(
            PROBE_TYPE, {self.user_id: {self.machine.device_id: {"probe": self._probe_id}}}
        )
        try:
            await asyncio.wait_for(self._probe.wait(), PROBE_SECONDS)
        except TimeoutError:
            self.unavailable = SETTING_TO_DEVICE
            log.error("encrypted rooms are off", reason=self.unavailable)
            return
        if not self.saw_key_counts:
            self.unavailable = SETTING_KEY_COUNTS
            log.error("encrypted rooms are off", reason=self.unavailable)
            return
        self.ready = True
        log.info("encrypted rooms ready", device_id=self.machine.device_id)

    # ----- the bridge's other identities -----
    def _new_machine(self, user_id: str) -> OlmMachine:
        device_id = "AW" + hashlib.sha256(user_id.encode()).hexdigest()[:10].upper()
        keys = KeysAPI(self.keys.base_url, self._as_token, user_id, device_id, self._http)
        return OlmMachine(user_id, device_id, self.machine.store, keys)

    async def machine_of(self, user_id: str) -> OlmMachine:
        """The machine of one of the bridge's identities; its device is created (MSC4190)
        and its keys uploaded the first time it is needed, and kept like the bot's."""
        machine = self._machines.get(user_id)
        if machine is not None and machine.shared:
            return machine
        async with self._identity_locks.setdefault(user_id, asyncio.Lock()):
            machine = self._machines.get(user_id)
            if machine is None:
                machine = self._new_machine(user_id)
                await machine.load_or_create()
                machine.keys.device_id = machine.device_id
                self._machines[user_id] = machine
            if not machine.shared:
                # a short name: ghosts' user ids are longer than the 100 characters allowed
                await machine.keys.create_device(f"{self.display_name[:60]} ({machine.device_id})")
                await machine.share_keys()
                log.info(
                    "device created for an identity of the bridge",
                    user_id=user_id,
                    device_id=machine.device_id,
                )
        return machine

    async def _bootstrap_cross_signing(self) -> None:
        """Cross-sign the bot's device; without it the bot still works, except with
        clients that share keys only with cross-signed devices (which the line says)."""
        try:
            master = await self.cross_signing.bootstrap(self.machine.device_keys())
        except (HomeserverRefused, CrossSigningRefused) as exc:
            log.error(
                "the bot's device is not cross-signed: clients that exclude insecure "
                "devices will not share room keys with it",
                error=str(exc),
            )
            return
        log.info(
            "the bot's device is cross-signed", device_id=self.machine.device_id, master_key=master
        )

    # ----- what arrives -----
    async def before_position_saved(self) -> None:
        """Before the inbox saves its position: the message indexes the events before it
        used are written (replay protection). Events past the saved position are handled
        again after a crash, and claim their indexes again, under the same event ids."""
        if self.machine is not None:
            await self.machine.store.flush_claims()

    async def ahead(self, body: dict[str, Any]) -> None:
        """A transaction just stored: its encrypted room events are sent to the
        decryption process (decryptor.py), which decrypts them while the inbox handles
        the transactions before it. Only work ahead: dispatch decides, as before."""
        if self.decryptor is None or not self.ready or self.unavailable:
            return
        events = body.get("events")
        if isinstance(events, list):
            await self.decryptor.ahead(events)

    async def stop(self) -> None:
        if self.decryptor is not None:
            await self.decryptor.stop()

    async def handle_transaction(self, body: dict[str, Any], txn_id: str) -> None:
        """The to-device, device-list and key-count parts of a stored transaction (before
        its room events: a room key and the message it opens often come together)."""
        if self.machine is None:
            return
        counts = _first(body, OTK_COUNT_KEYS)
        fallback = _first(body, FALLBACK_KEYS)
        # per identity with a device: (count or None, fallback used)
        replenish: dict[str, tuple[int | None, bool]] = {}
        for user_id, machine in list(self._machines.items()):
            count = None
            if isinstance(counts, dict):
                ours = (counts.get(user_id) or {}).get(machine.device_id)
                if isinstance(ours, dict):
                    if machine is self.machine:
                        self.saw_key_counts = True
                    count = ours.get("signed_curve25519", 0)
            fallback_used = False
            if isinstance(fallback, dict):
                types = (fallback.get(user_id) or {}).get(machine.device_id)
                fallback_used = isinstance(types, list) and "signed_curve25519" not in types
            if count is not None or fallback_used:
                replenish[user_id] = (count, fallback_used)
        lists = _first(body, DEVICE_LISTS_KEYS)
        if isinstance(lists, dict) and isinstance(lists.get("changed"), list):
            await self.machine.store.mark_outdated(
                [u for u in lists["changed"] if isinstance(u, str)]
            )
        to_device = _first(body, TO_DEVICE_KEYS)
        for event in to_device if isinstance(to_device, list) else ():
            if not isinstance(event, dict):
                continue
            machine = self._machines.get(event.get("to_user_id", self.user_id))
            if machine is None:
                continue
            if event.get("to_device_id", machine.device_id) not in (machine.device_id, "*"):
                continue
            try:
                await self._to_device(event, machine)
            except Exception:
                log.exception("to-device event failed", txn_id=txn_id, type=event.get("type"))
        if not self.ready:
            return
        for user_id, (count, fallback_used) in replenish.items():
            machine = self._machines[user_id]
            if not machine.shared:
                continue  # its first upload is under way (machine_of)
            try:
                await machine.share_keys(count, fallback_used)
            except HomeserverRefused as exc:
                log.warning("could not replenish one-time keys", user_id=user_id, error=str(exc))

    async def _to_device(self, event: dict[str, Any], machine: OlmMachine | None = None) -> None:
        """A to-device event for ``machine`` (the bot's by default)."""
        machine = machine or self.machine
        sender, event_type = event.get("sender"), event.get("type")
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        if event_type == PROBE_TYPE and sender == self.user_id and machine is self.machine:
            if content.get("probe") == self._probe_id:
                self._probe.set()
            return
        if event_type == "m.room_key.withheld":
            await self._withheld(sender, content)
            return
        if event_type != "m.room.encrypted":
            return
        try:
            payload, step = await machine.decrypt_olm(sender, content)
            await self._check_sender_device(sender, payload)
        except DecryptionError as exc:
            log.warning("to-device message not decrypted", sender=sender, reason=str(exc))
            return
        session_id = None
        # the Olm ratchet and the room key it carried are saved together, or neither is
        # (then the homeserver's retry or the inbox's replay decrypts the message again)
        try:
            async with machine.store.db.acquire() as conn, conn.transaction():
                await machine.save_olm_step(step, conn)
                if payload.get("type") in ("m.room_key", "m.forwarded_room_key"):
                    key = payload.get("content") or {}
                    asked = self._requested.get(key.get("session_id"))
                    requested = asked == (key.get("room_id"), sender, machine.user_id)
                    try:
                        session_id = await machine.add_room_key(payload, conn, requested=requested)
                    except DecryptionError as exc:
                        log.warning("room key refused", sender=sender, reason=str(exc))
        except BaseException:
            await machine.reload_account()  # as stored: its one-time key is still there
            raise
        if session_id is not None:
            log.info(
                "room key received",
                sender=sender,
                room_id=(payload.get("content") or {}).get("room_id"),
                session_id=session_id,
            )
            for room_id in await machine.store.rooms_waiting_for(session_id):
                async with self._queue_lock(room_id):
                    await self._release(room_id)

    async def _check_sender_device(self, sender: str, payload: dict[str, Any]) -> None:
        """The Olm message came from a device of ``sender`` that we know (queried from the
        homeserver, self-signed) and that signs with the key the payload claims."""
        store = self.machine.store
        device = await store.device_by_curve(sender, payload["sender_key"])
        if device is None:
            await self._query_devices([sender])
            device = await store.device_by_curve(sender, payload["sender_key"])
        if device is None:
            raise DecryptionError("from a device the homeserver does not list for the sender")
        if (payload.get("keys") or {}).get("ed25519") != device[1]:
            raise DecryptionError("the payload's signing key is not the sending device's")

    async def _withheld(self, sender: str, content: dict[str, Any]) -> None:
        session_id, room_id = content.get("session_id"), content.get("room_id")
        log.warning(
            "a room key was withheld from the bot",
            sender=sender,
            room_id=room_id,
            code=content.get("code"),
            reason=content.get("reason"),
        )
        if isinstance(session_id, str):
            for waiting_room in await self.machine.store.rooms_waiting_for(session_id):
                async with self._queue_lock(waiting_room):
                    await self._release(waiting_room, give_up=session_id)

    async def _request_key(self, room_id: str, event: MatrixEvent) -> None:
        """Ask the sender's devices for the room key of an event (``m.room_key_request``),
        as the identity of the bridge that reads the room (:meth:`reader_of`: its device is
        the one the key was meant for); a key they forward for it, to that device, is
        accepted (and only then). The sender of a Megolm event is the one who made its
        session, also when the bot holds a forwarded copy of it."""
        content = event.content
        session_id = content.get("session_id")
        if not isinstance(session_id, str) or session_id in self._requested:
            return
        machine = await self.reader_of(room_id)
        if len(self._requested) >= 10_000:
            self._requested.clear()
        self._requested[session_id] = (room_id, event.sender, machine.user_id)
        body = {"algorithm": MEGOLM, "room_id": room_id, "session_id": session_id}
        if isinstance(content.get("sender_key"), str):  # deprecated, not always sent
            body["sender_key"] = content["sender_key"]
        request = {
            "action": "request",
            "body": body,
            "request_id": hashlib.sha256(session_id.encode()).hexdigest()[:24],
            "requesting_device_id": machine.device_id,
        }
        try:
            await machine.keys.send_to_device("m.room_key_request", {event.sender: {"*": request}})
        except HomeserverRefused as exc:
            log.warning("could not ask for a room key", room_id=room_id, error=str(exc))
            return
        log.info(
            "asked the sender's devices for a room key",
            room_id=room_id,
            sender=event.sender,
            session_id=session_id,
            asked_as=machine.user_id,
            device_id=machine.device_id,
        )

    async def _ask_again_for_waiting_keys(self) -> None:
        """At start-up: the keys of events kept from before (what was asked, and its
        answer, may have been lost with the bridge down) are asked for again, and waited
        for their full time again."""
        if self._waiting_rooms:
            await self.machine.store.wait_again()
        for room_id in list(self._waiting_rooms):
            for item in await self.machine.store.waiting_in(room_id):
                event = MatrixEvent(item["event"], item["txn_id"], False)
                if item["session_id"] is not None and self._needs_key(event):
                    await self._request_key(room_id, event)

    async def reader_of(self, room_id: str) -> OlmMachine:
        """The machine of the identity of the bridge that reads ``room_id``: the bot when
        it is a member, else another identity with a device that is (the memo user in its
        direct chats, a portal's ghost) — whose device the room's keys are shared with, and
        who can write there. The bot when none is known to be."""
        known = self._machines.get(self._readers.get(room_id, ""))
        if known is not None:
            return known
        others = [m for u, m in self._machines.items() if u != self.user_id and m.shared]
        for asking in [self.machine, *others]:
            try:
                members = await asking.keys.joined_members(room_id)
            except HomeserverRefused:
                continue  # not in the room
            if asking.user_id not in members:
                continue
            if self.user_id not in members:
                asking = next(m for m in others if m.user_id in members)
            self._readers[room_id] = asking.user_id
            return asking
        return self.machine

    def _queue_lock(self, room_id: str) -> asyncio.Lock:
        return self._queue_locks.setdefault(room_id, asyncio.Lock())

    async def _expire_waiting_forever(self) -> None:
        """Every second: a room whose oldest event has waited longer than
        ``key_wait_seconds`` for its key gives up on that key — the sender is told, and
        the room's later events go on (a lost key must not block a room for ever)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.expire_waiting()
            except Exception:
                log.exception("giving up on missing room keys failed")

    async def expire_waiting(self) -> None:
        store = self.machine.store
        for room_id in list(self._waiting_rooms):
            async with self._queue_lock(room_id):
                items = [i for i in await store.waiting_in(room_id) if i["session_id"]]
                if not items:
                    continue
                head = items[0]
                if now_ms() - head["waiting_since"] < self.key_wait_seconds * 1000:
                    continue
                log.warning(
                    "gave up waiting for a room key",
                    room_id=room_id,
                    event_id=head["event"].get("event_id"),
                    session_id=head["session_id"],
                    waited_s=round((now_ms() - head["waiting_since"]) / 1000),
                )
                for item in items:
                    if item["session_id"] == head["session_id"]:
                        await self._tell_sender(room_id, item["event"])
                await self._release(room_id, give_up=head["session_id"])

    async def _tell_sender(self, room_id: str, event: dict[str, Any]) -> None:
        """A notice (encrypted) replying to a message the bot could not read, from the
        identity of the bridge that reads the room (:meth:`reader_of`)."""
        event_id, sender = event.get("event_id", ""), event.get("sender", "")
        machine = await self.reader_of(room_id)
        content = {
            "msgtype": "m.notice",
            "body": (
                f"{sender}: I could not read your message: its key did not reach me within "
                f"{self.key_wait_seconds:g} s. Please send it again (if this repeats, check "
                "that your client shares keys with my device)."
            ),
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }
        encrypted = await self.encrypt(room_id, "m.room.message", content, machine.user_id)
        txn = "anywhere.nokey." + hashlib.sha256(event_id.encode()).hexdigest()[:32]
        try:
            await machine.keys.request(
                "PUT",
                f"/rooms/{quote(room_id, safe='')}/send/m.room.encrypted/{txn}",
                encrypted,
                what="telling a sender their message could not be read",
                as_device=False,
            )
        except HomeserverRefused as exc:
            log.warning("could not tell the sender", room_id=room_id, error=str(exc))

    def wrap(self, dispatch: Dispatch) -> Dispatch:
        """The dispatcher the inbox calls: decrypts before ``dispatch``."""

        async def decrypting_dispatch(event: MatrixEvent) -> None:
            await self.dispatch(event, dispatch)

        return decrypting_dispatch

    async def dispatch(self, event: MatrixEvent, dispatch: Dispatch) -> None:
        if self.machine is None or self.unavailable or event.ephemeral or not event.room_id:
            await dispatch(event)
            return
        await self._note_state(event)
        room_id = event.room_id
        if room_id in self._waiting_rooms:  # keep the room's order
            async with self._queue_lock(room_id):
                if room_id in self._waiting_rooms:
                    session_id = event.content.get("session_id") if self._needs_key(event) else None
                    await self.machine.store.wait(room_id, session_id, event.txn_id, event.raw)
                    await self._release(room_id)
                    return
        if not self._needs_key(event):
            await dispatch(event)
            return
        try:
            if self.decryptor is not None:
                plain = await self.decryptor.decrypt(event.raw)
            else:
                plain = await self.machine.decrypt_megolm(event.raw)
        except MissingKey as missing:
            log.info(
                "waiting for the room key of an encrypted event",
                room_id=room_id,
                event_id=event.event_id,
                session_id=str(missing),
            )
            await self.machine.store.wait(room_id, str(missing), event.txn_id, event.raw)
            self._waiting_rooms.add(room_id)
            await self._request_key(room_id, event)
            return
        except DecryptionError as exc:
            log.warning(
                "encrypted event not decrypted",
                room_id=room_id,
                event_id=event.event_id,
                sender=event.sender,
                reason=str(exc),
            )
            return
        await dispatch(self._decrypted(event, plain))

    def _needs_key(self, event: MatrixEvent) -> bool:
        return self._raw_needs_key(event.raw)

    def _raw_needs_key(self, raw: dict[str, Any]) -> bool:
        return raw.get("type") == "m.room.encrypted" and not self.is_ours(raw.get("sender", ""))

    @staticmethod
    def _decrypted(event: MatrixEvent, plain: dict[str, Any]) -> MatrixEvent:
        raw = dict(event.raw)
        content = dict(plain["content"])
        relates = event.content.get("m.relates_to")
        if relates is not None and "m.relates_to" not in content:
            content["m.relates_to"] = relates
        raw["type"], raw["content"] = plain.get("type", ""), content
        unsigned = dict(raw.get("unsigned") or {})
        unsigned["io.anywhere.encrypted"] = True
        raw["unsigned"] = unsigned
        return MatrixEvent(raw, event.txn_id, False)

    async def _release(self, room_id: str, give_up: str | None = None) -> None:
        """Dispatch a room's waiting events from the oldest, until one still lacks its key
        (``give_up``: the events of that session are dropped, with a log line)."""
        store = self.machine.store
        for item in await store.waiting_in(room_id):
            event = MatrixEvent(item["event"], item["txn_id"], False)
            if item["session_id"] is None or not self._needs_key(event):
                await self._dispatch(event)
                await store.done_waiting(item["seq"])
                continue
            try:
                plain = await self.machine.decrypt_megolm(event.raw)
            except MissingKey:
                if item["session_id"] != give_up:
                    return  # the room waits for this key
                log.warning(
                    "encrypted event dropped: its room key was withheld",
                    room_id=room_id,
                    event_id=event.event_id,
                )
            except DecryptionError as exc:
                log.warning(
                    "encrypted event not decrypted",
                    room_id=room_id,
                    event_id=event.event_id,
                    reason=str(exc),
                )
            else:
                await self._dispatch(self._decrypted(event, plain))
                await store.flush_claims()  # before the event is no longer kept
            await store.done_waiting(item["seq"])
        self._waiting_rooms.discard(room_id)

    async def _note_state(self, event: MatrixEvent) -> None:
        if event.state_key is None:
            return
        if event.type == "m.room.encryption":
            self._room_encryption[event.room_id] = event.content
        elif event.type == "m.room.member":
            self._members.pop(event.room_id, None)
            self._readers.pop(event.room_id, None)
            await self._device_before_joining(event)
            if event.content.get("membership") in ("leave", "ban"):
                # whoever left must not read what comes next: the next send starts a new
                # session (durably: also after a restart)
                async with self._room_locks.setdefault(event.room_id, asyncio.Lock()):
                    await self.machine.store.discard_outbound(event.room_id)

    async def _device_before_joining(self, event: MatrixEvent) -> None:
        """Another identity of the bridge invited into (or joining) an encrypted room gets
        its device before it joins (the plugins' handlers join after this), so the
        members' clients share their room keys with it from its first event on."""
        user_id = event.state_key or ""
        membership = event.content.get("membership")
        if user_id == self.user_id or not self.is_ours(user_id) or not self.ready:
            return
        if membership == "invite":
            stripped = (event.raw.get("unsigned") or {}).get("invite_room_state") or []
            encrypted = any(
                isinstance(s, dict) and s.get("type") == "m.room.encryption" for s in stripped
            )
            if encrypted:
                self._room_encryption.setdefault(event.room_id, {"algorithm": MEGOLM})
        elif membership == "join":
            encrypted = await self.is_encrypted(event.room_id, user_id)
        else:
            return
        if not encrypted:
            return
        try:
            await self.machine_of(user_id)
        except HomeserverRefused as exc:
            log.error(
                "could not create the device of an identity of the bridge: it cannot read "
                "this encrypted room",
                user_id=user_id,
                room_id=event.room_id,
                error=str(exc),
            )

    # ----- what the bot sends -----
    async def is_encrypted(self, room_id: str, user_id: str | None = None) -> bool:
        """Whether ``room_id`` is encrypted (read as ``user_id``, the bot by default)."""
        if not self.ready:
            return False
        if room_id not in self._room_encryption:
            keys = self.keys
            if user_id is not None and user_id != self.user_id:
                keys = KeysAPI(self.keys.base_url, self._as_token, user_id, "", self._http)
            try:
                self._room_encryption[room_id] = await keys.encryption_state(room_id)
            except HomeserverRefused as exc:
                # not in the room (yet): the send itself says so, or joins first; asked
                # again next time
                log.info("room's encryption unknown", room_id=room_id, error=str(exc))
                return False
        return bool(self._room_encryption[room_id])

    async def encrypt(
        self, room_id: str, event_type: str, content: dict, sender: str | None = None
    ) -> dict[str, Any]:
        """Megolm-encrypted content from ``sender`` (the bot by default; another identity
        of the bridge gets its device when it first sends)."""
        machine = self.machine
        if sender is not None and sender != self.user_id:
            machine = await self.machine_of(sender)
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            store = machine.store
            state = await store.outbound(machine.user_id, room_id)
            settings = self._room_encryption.get(room_id) or {}
            if state is not None and self._expired(state, settings):
                state = None
            if state is None:
                state = machine.new_outbound()
            await self._share(room_id, state, machine)
            encrypted = machine.megolm_encrypt(state, room_id, event_type, content)
            await store.save_outbound(machine.user_id, room_id, state)
            return encrypted

    @staticmethod
    def _expired(state: dict[str, Any], settings: dict[str, Any]) -> bool:
        period = settings.get("rotation_period_ms")
        messages = settings.get("rotation_period_msgs")
        period = period if isinstance(period, int) and period > 0 else ROTATION_MS
        messages = messages if isinstance(messages, int) and messages > 0 else ROTATION_MESSAGES
        too_old = now_ms() - state["created_at"] >= period
        return too_old or state["messages"] >= messages

    async def _share(self, room_id: str, state: dict[str, Any], machine: OlmMachine) -> None:
        """Send the session's key (Olm) to the devices of the joined members that lack it."""
        if room_id not in self._members:
            self._members[room_id] = await machine.keys.joined_members(room_id)
        members = [u for u in self._members[room_id] if u != machine.user_id]
        outdated = await machine.store.outdated_users(members)
        if outdated:
            await self._query_devices(outdated)
        session = state["session"]
        room_key = {
            "algorithm": MEGOLM,
            "room_id": room_id,
            "session_id": session.session_id,
            "session_key": session.session_key.to_base64(),
        }
        messages: dict[str, dict[str, Any]] = {}
        for user_id in members:
            for device_id, (curve, ed) in (await machine.store.devices(user_id)).items():
                if (user_id, device_id) in state["shared_with"]:
                    continue
                encrypted = await machine.olm_encrypt(
                    user_id, (device_id, curve, ed), "m.room_key", room_key
                )
                if encrypted is not None:
                    messages.setdefault(user_id, {})[device_id] = encrypted
                state["shared_with"].add((user_id, device_id))
        if messages:
            await machine.keys.send_to_device("m.room.encrypted", messages)
            log.info(
                "room key shared",
                room_id=room_id,
                sender=machine.user_id,
                devices=sum(len(d) for d in messages.values()),
            )

    async def _query_devices(self, user_ids: list[str]) -> None:
        answer = await self.keys.query(user_ids)
        for user_id, devices in (answer.get("device_keys") or {}).items():
            if user_id not in user_ids or not isinstance(devices, dict):
                continue
            good: dict[str, tuple[str, str]] = {}
            for device_id, keys in devices.items():
                if not isinstance(keys, dict) or keys.get("user_id") != user_id:
                    continue
                if keys.get("device_id") != device_id:
                    continue
                key_map = keys.get("keys") or {}
                curve = key_map.get(f"curve25519:{device_id}")
                ed = key_map.get(f"ed25519:{device_id}")
                if not isinstance(curve, str) or not isinstance(ed, str):
                    continue
                if not verify_signed(keys, user_id, device_id, ed):
                    log.warning(
                        "device keys with a bad signature ignored",
                        user_id=user_id,
                        device_id=device_id,
                    )
                    continue
                good[device_id] = (curve, ed)
            await self.machine.store.replace_devices(user_id, good)


class EncryptingIntent(IntentAPI):
    """An intent of the bridge (the bot's, or another identity's): message events into
    encrypted rooms are encrypted, with the device of the intent's user."""

    encryption: Encryption | None = None

    async def send_message_event(self, room_id, event_type, content, **kwargs):  # noqa: ANN001
        encryption = self.encryption
        type_name = getattr(event_type, "t", None) or str(event_type)
        if (
            encryption is not None
            and type_name != "m.room.encrypted"
            and await encryption.is_encrypted(room_id, self.mxid)
        ):
            plain = content.serialize() if hasattr(content, "serialize") else dict(content)
            encrypted = await encryption.encrypt(room_id, type_name, plain, self.mxid)
            return await super().send_message_event(
                room_id, EventType.ROOM_ENCRYPTED, encrypted, **kwargs
            )
        return await super().send_message_event(room_id, event_type, content, **kwargs)


class EncryptingAppServiceAPI(AppServiceAPI):
    """mautrix's appservice API whose bot intent encrypts (:class:`EncryptingIntent`)."""

    encryption: Encryption | None = None

    def bot_intent(self) -> IntentAPI:
        if not self._bot_intent:
            intent = EncryptingIntent(self.bot_mxid, self, state_store=self.state_store)
            intent.encryption = self.encryption
            self._bot_intent = intent
        return self._bot_intent

    def intent(
        self,
        user: str | None = None,
        token: str | None = None,
        base_url: str | None = None,
        real_user_as_token: bool = False,
    ) -> IntentAPI:
        """Another identity's intent (memo/conference users, ghosts): it encrypts too."""
        if not user or token or self.is_real_user:
            return super().intent(user, token, base_url, real_user_as_token)
        intent = EncryptingIntent(user, self.user(user), self.bot_intent(), self.state_store)
        intent.encryption = self.encryption
        return intent
