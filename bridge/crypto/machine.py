"""Olm and Megolm for one device (the bot's): its account, decrypting what arrives,
encrypting what it sends. Talks to the homeserver through :class:`KeysAPI`; keeps its
state in :class:`CryptoStore`. Messages naming key material never carry the keys."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
import vodozemac

from .homeserver import KeysAPI
from .megolm_worker import open_megolm
from .store import CryptoStore, now_ms

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
OTK_ALGORITHM = "signed_curve25519"
log = structlog.get_logger("anywhere.crypto")


@dataclass
class OlmStep:
    """An Olm session moved on by a decryption, not yet saved."""

    sender_key: str
    session: vodozemac.Session
    new_account: bool


class DecryptionError(Exception):
    """A message that cannot be decrypted; the message says why (never with key material)."""


class MissingKey(DecryptionError):
    """The room key of a Megolm message has not arrived (yet)."""


@dataclass
class SealedMegolm:
    """A Megolm message checked against the room key it needs, not yet decrypted."""

    session_id: str
    session: vodozemac.InboundGroupSession
    ciphertext: str

    def open(self) -> tuple[bytes, int]:
        """Decrypted here: (plaintext, message index)."""
        return self.opened(open_megolm(self.session, self.ciphertext))

    def opened(self, outcome: tuple) -> tuple[bytes, int]:
        """(plaintext, message index) from what :func:`open_megolm` answered (here or in
        the decryption process), else the DecryptionError saying why."""
        if outcome[0] == "ok":
            return outcome[1], outcome[2]
        if outcome[0] == "missing":
            raise MissingKey(self.session_id)
        if outcome[0] == "forged":
            raise DecryptionError("the message does not verify (forged or damaged)")
        raise DecryptionError(f"malformed Megolm message ({outcome[-1]})")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verify_signed(obj: dict[str, Any], user_id: str, key_id: str, ed25519: str) -> bool:
    """Whether ``obj`` carries a valid signature of ``user_id``'s ``ed25519:key_id``."""
    signature = (obj.get("signatures") or {}).get(user_id, {}).get(f"ed25519:{key_id}")
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    try:
        vodozemac.Ed25519PublicKey.from_base64(ed25519).verify_signature(
            canonical_json(unsigned).encode(), vodozemac.Ed25519Signature.from_base64(signature)
        )
    except Exception:
        return False
    return True


class OlmMachine:
    def __init__(self, user_id: str, device_id: str, store: CryptoStore, keys: KeysAPI) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.store = store
        self.keys = keys
        self.account: vodozemac.Account | None = None
        self.shared = False

    # ----- the account -----
    @property
    def curve25519(self) -> str:
        return self.account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self.account.ed25519_key.to_base64()

    async def load_or_create(self) -> bool:
        """Load the stored account, or create one; True when it was created."""
        loaded = await self.store.load_account(self.user_id)
        if loaded is not None:
            self.device_id, self.account, self.shared = loaded
            return False
        self.account, self.shared = vodozemac.Account(), False
        await self.store.save_account(self.user_id, self.device_id, self.account, False)
        return True

    async def reload_account(self) -> None:
        """The account as stored (after a save that did not happen)."""
        loaded = await self.store.load_account(self.user_id)
        if loaded is not None:
            self.device_id, self.account, self.shared = loaded

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        signature = self.account.sign(canonical_json(unsigned).encode()).to_base64()
        obj.setdefault("signatures", {}).setdefault(self.user_id, {})[
            f"ed25519:{self.device_id}"
        ] = signature
        return obj

    def device_keys(self) -> dict[str, Any]:
        return self.sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": [OLM, MEGOLM],
                "keys": {
                    f"curve25519:{self.device_id}": self.curve25519,
                    f"ed25519:{self.device_id}": self.ed25519,
                },
            }
        )

    async def share_keys(self, otk_count: int | None = None, fallback_used: bool = False) -> None:
        """Upload the device keys (first time), one-time keys up to half the maximum, and
        a new fallback key when the last one was used (or none was ever made)."""
        body: dict[str, Any] = {}
        if not self.shared:
            body["device_keys"] = self.device_keys()
        target = self.account.max_number_of_one_time_keys // 2
        if otk_count is None:
            otk_count = 0 if not self.shared else target
        if otk_count < target:
            self.account.generate_one_time_keys(target - otk_count)
            body["one_time_keys"] = {
                f"{OTK_ALGORITHM}:{key_id}": self.sign({"key": key.to_base64()})
                for key_id, key in self.account.one_time_keys.items()
            }
        if fallback_used or not self.shared:
            self.account.generate_fallback_key()
            body["fallback_keys"] = {
                f"{OTK_ALGORITHM}:{key_id}": self.sign({"key": key.to_base64(), "fallback": True})
                for key_id, key in self.account.fallback_key.items()
            }
        if not body:
            return
        await self.keys.upload(body)
        self.account.mark_keys_as_published()
        self.shared = True
        await self.store.save_account(self.user_id, self.device_id, self.account, True)
        log.info(
            "uploaded encryption keys",
            device_keys="device_keys" in body,
            one_time_keys=len(body.get("one_time_keys") or ()),
            fallback_key="fallback_keys" in body,
        )

    # ----- Olm (to-device) -----
    async def decrypt_olm(
        self, sender: str, content: dict[str, Any]
    ) -> tuple[dict[str, Any], OlmStep]:
        """The plaintext payload of an Olm-encrypted to-device event, checked: it is for
        this device, from the device whose identity key encrypted it; and the Olm state it
        moved, which the caller saves (:meth:`save_olm_step`) in the same database
        transaction as what the payload carries — a crash in between must not leave the
        ratchet moved on and the room key lost."""
        if content.get("algorithm") != OLM:
            raise DecryptionError(f"unsupported algorithm {content.get('algorithm')!r}")
        sender_key = content.get("sender_key")
        mine = (content.get("ciphertext") or {}).get(self.curve25519)
        if not isinstance(sender_key, str) or not isinstance(mine, dict):
            raise DecryptionError("not encrypted for this device")
        try:
            message = vodozemac.AnyOlmMessage.from_parts(int(mine["type"]), unb64(mine["body"]))
            identity = vodozemac.Curve25519PublicKey.from_base64(sender_key)
        except Exception as exc:
            raise DecryptionError(f"malformed Olm message ({type(exc).__name__})") from None
        plaintext = None
        for session in await self.store.olm_sessions(self.user_id, sender_key):
            if mine["type"] == 0 and not session.session_matches(message.to_pre_key()):
                continue
            try:
                plaintext = session.decrypt(message)
            except Exception:
                continue
            step = OlmStep(sender_key, session, new_account=False)
            break
        if plaintext is None:
            if mine["type"] != 0:
                raise DecryptionError("no Olm session decrypts it (replayed or reordered?)")
            try:
                session, plaintext = self.account.create_inbound_session(
                    identity, message.to_pre_key()
                )
            except Exception as exc:
                raise DecryptionError(
                    f"cannot start an Olm session from it ({type(exc).__name__}: replayed, "
                    "or a one-time key already used?)"
                ) from None
            step = OlmStep(sender_key, session, new_account=True)
        try:
            payload = json.loads(plaintext)
        except ValueError:
            raise DecryptionError("the decrypted payload is not JSON") from None
        if payload.get("sender") != sender or payload.get("recipient") != self.user_id:
            raise DecryptionError("sender or recipient in the payload do not match the event")
        if (payload.get("recipient_keys") or {}).get("ed25519") != self.ed25519:
            raise DecryptionError("encrypted for another device's signing key")
        payload["sender_key"] = sender_key
        return payload, step

    async def save_olm_step(self, step: OlmStep, conn: Any = None) -> None:
        await self.store.save_olm_session(self.user_id, step.sender_key, step.session, conn)
        if step.new_account:  # its one-time key is used up
            await self.store.save_account(
                self.user_id, self.device_id, self.account, self.shared, conn
            )

    async def olm_encrypt(
        self, user_id: str, device: tuple[str, str, str], event_type: str, content: dict
    ) -> dict[str, Any] | None:
        """Olm-encrypted content for one device ``(device_id, curve25519, ed25519)``; None
        when no session could be made (the device has no one-time or fallback key)."""
        device_id, curve, ed = device
        sessions = await self.store.olm_sessions(self.user_id, curve)
        session = sessions[0] if sessions else None
        if session is None:
            claimed = await self.keys.claim({user_id: {device_id: OTK_ALGORITHM}})
            keys = claimed.get(user_id, {}).get(device_id, {})
            one_time = next(iter(keys.values()), None) if isinstance(keys, dict) else None
            if not isinstance(one_time, dict) or not verify_signed(
                one_time, user_id, device_id, ed
            ):
                log.warning(
                    "no valid one-time key for a device; it gets no room key",
                    user_id=user_id,
                    device_id=device_id,
                )
                return None
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(curve),
                vodozemac.Curve25519PublicKey.from_base64(one_time["key"]),
            )
        payload = {
            "type": event_type,
            "content": content,
            "sender": self.user_id,
            "sender_device": self.device_id,
            "keys": {"ed25519": self.ed25519},
            "recipient": user_id,
            "recipient_keys": {"ed25519": ed},
        }
        message_type, ciphertext = session.encrypt(canonical_json(payload).encode()).to_parts()
        await self.store.save_olm_session(self.user_id, curve, session)
        return {
            "algorithm": OLM,
            "sender_key": self.curve25519,
            "ciphertext": {curve: {"type": message_type, "body": b64(ciphertext)}},
        }

    # ----- Megolm (room events) -----
    async def add_room_key(
        self, payload: dict[str, Any], conn: Any = None, *, requested: bool = False
    ) -> str | None:
        """Store the room key an Olm payload carries; its session id, or None. A forwarded
        key only when ``requested`` (the bot asked this sender for this room's session)."""
        content = payload.get("content") or {}
        if content.get("algorithm") != MEGOLM:
            return None
        if payload.get("type") == "m.forwarded_room_key" and not requested:
            # unsolicited: whoever sends it could claim any sender for it
            raise DecryptionError("a forwarded room key the bot did not ask for")
        room_id, session_key = content.get("room_id"), content.get("session_key")
        signing_key = (payload.get("keys") or {}).get("ed25519")
        if not all(isinstance(v, str) for v in (room_id, session_key, signing_key)):
            raise DecryptionError("room key without room_id, session_key or signing key")
        try:
            if payload.get("type") == "m.forwarded_room_key":
                session = vodozemac.InboundGroupSession.import_session(
                    vodozemac.ExportedSessionKey(session_key)
                )
                signing_key = content.get("sender_claimed_ed25519_key") or signing_key
                sender_key = content.get("sender_key") or payload["sender_key"]
            else:
                session = vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key))
                sender_key = payload["sender_key"]
        except Exception as exc:
            raise DecryptionError(f"unusable room key ({type(exc).__name__})") from None
        if content.get("session_id") not in (None, session.session_id):
            raise DecryptionError("the room key's session_id does not match its key")
        await self.store.save_inbound(room_id, sender_key, signing_key, session, conn)
        return session.session_id

    async def sealed_megolm(
        self, event: dict[str, Any], looked_up: dict[str, Any] | None = None
    ) -> SealedMegolm:
        """An encrypted room event, checked against its room key before decrypting: a
        Megolm message whose key the bot holds, for this room and this sender
        (``looked_up``: room keys already read, by session id, for a batch of events)."""
        content = event.get("content") or {}
        if content.get("algorithm") != MEGOLM:
            raise DecryptionError(f"unsupported algorithm {content.get('algorithm')!r}")
        session_id, ciphertext = content.get("session_id"), content.get("ciphertext")
        if not isinstance(session_id, str) or not isinstance(ciphertext, str):
            raise DecryptionError("no session_id or ciphertext")
        if looked_up is not None and session_id in looked_up:
            known = looked_up[session_id]
        else:
            known = await self.store.inbound(session_id)
            if looked_up is not None:
                looked_up[session_id] = known
        if known is None:
            raise MissingKey(session_id)
        session, room_id, sender_key, _signing_key = known
        if room_id != event.get("room_id"):
            raise DecryptionError("the room key belongs to another room (forged?)")
        if content.get("sender_key") not in (None, sender_key):
            raise DecryptionError("the sender key does not match the room key's (forged?)")
        return SealedMegolm(session_id, session, ciphertext)

    async def accept_megolm(
        self, event: dict[str, Any], sealed: SealedMegolm, opened: tuple[bytes, int]
    ) -> dict[str, Any]:
        """The plaintext ``{type, content}`` of a decrypted room event (``opened``:
        plaintext and message index), once its message index is claimed for it (a replay
        under another event id is refused) and its payload names the event's room."""
        plaintext, message_index = opened
        if not await self.store.claim_message_index(
            sealed.session_id, message_index, event.get("event_id", "")
        ):
            raise DecryptionError("message index already used by another event (replayed)")
        try:
            plain = orjson.loads(plaintext)
        except ValueError:
            raise DecryptionError("the decrypted payload is not JSON") from None
        if not isinstance(plain, dict):
            raise DecryptionError("the decrypted payload is not a JSON object")
        if plain.get("room_id") != event.get("room_id") or not isinstance(
            plain.get("content"), dict
        ):
            raise DecryptionError("the decrypted event names another room (replayed?)")
        return plain

    async def decrypt_megolm(self, event: dict[str, Any]) -> dict[str, Any]:
        """The plaintext ``{type, content}`` of an encrypted room event, decrypted here
        (:class:`~anywhere.bridge.crypto.decryptor.MegolmDecryptor` decrypts in a
        process of its own, ahead of dispatch)."""
        sealed = await self.sealed_megolm(event)
        return await self.accept_megolm(event, sealed, sealed.open())

    def new_outbound(self) -> dict[str, Any]:
        return {
            "session": vodozemac.GroupSession(),
            "created_at": now_ms(),
            "messages": 0,
            "shared_with": set(),
        }

    def megolm_encrypt(
        self, state: dict[str, Any], room_id: str, event_type: str, content: dict
    ) -> dict[str, Any]:
        session: vodozemac.GroupSession = state["session"]
        plaintext = canonical_json({"type": event_type, "content": content, "room_id": room_id})
        ciphertext = session.encrypt(plaintext.encode()).to_base64()
        state["messages"] += 1
        encrypted: dict[str, Any] = {
            "algorithm": MEGOLM,
            "sender_key": self.curve25519,
            "ciphertext": ciphertext,
            "session_id": session.session_id,
            "device_id": self.device_id,
        }
        if "m.relates_to" in content:  # relations stay readable to the server
            encrypted["m.relates_to"] = content["m.relates_to"]
        return encrypted
