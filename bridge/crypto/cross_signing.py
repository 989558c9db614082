"""The bot's cross-signing identity: a master key, a self-signing key (signs the bot's own
devices) and a user-signing key, so that clients which share room keys only with devices
their owner cross-signed (Element's "exclude insecure devices") share them with the bot.

vodozemac has no general Ed25519 signing key, so these are ``cryptography``'s Ed25519
keys. Their private halves are stored in the bridge's database encrypted (AES-256-GCM)
with the pickle key, like every other secret of the bot's device, and never logged.
Uploaded with the appservice's ``as_token``: Synapse lets an appservice upload (and
replace) cross-signing keys without user-interactive auth.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mautrix.util.async_db import Database

from ..errors import AnywhereError
from .homeserver import KeysAPI
from .machine import b64, canonical_json, unb64

log = structlog.get_logger("anywhere.crypto")
USAGES = ("master", "self_signing", "user_signing")


def public_key(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_json(obj: dict[str, Any], user_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """``obj`` with ``key``'s signature added (Matrix signed JSON)."""
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    signature = b64(key.sign(canonical_json(unsigned).encode()))
    signed = dict(obj)
    signatures = {u: dict(s) for u, s in (obj.get("signatures") or {}).items()}
    signatures.setdefault(user_id, {})[f"ed25519:{public_key(key)}"] = signature
    signed["signatures"] = signatures
    return signed


class CrossSigningSecrets:
    """The three private keys of one user, sealed with the pickle key in the database."""

    def __init__(self, db: Database, pickle_key: bytes, user_id: str) -> None:
        self.db = db
        # a key of its own, derived from the pickle key (which vodozemac uses as it is)
        self._aead = AESGCM(hashlib.sha256(b"anywhere.cross_signing|" + pickle_key).digest())
        self.user_id = user_id

    async def load_or_create(self) -> dict[str, Ed25519PrivateKey]:
        row = await self.db.fetchrow(
            "SELECT sealed FROM crypto_cross_signing WHERE user_id = $1", self.user_id
        )
        if row is not None:
            sealed = unb64(row["sealed"])
            try:
                plain = self._aead.decrypt(sealed[:12], sealed[12:], self._aad())
            except InvalidTag:
                raise SealedWithAnotherKey(
                    f"the cross-signing keys of {self.user_id} in the database were sealed "
                    "with another encryption.pickle_key: put the old key back in the config "
                    "(docs/encryption.md: back up encryption.pickle_key)"
                ) from None
            seeds = json.loads(plain)
            return {u: Ed25519PrivateKey.from_private_bytes(unb64(seeds[u])) for u in USAGES}
        keys = {usage: Ed25519PrivateKey.generate() for usage in USAGES}
        seeds = {usage: b64(key.private_bytes_raw()) for usage, key in keys.items()}
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, json.dumps(seeds).encode(), self._aad())
        await self.db.execute(
            "INSERT INTO crypto_cross_signing (user_id, sealed) VALUES ($1, $2)",
            self.user_id,
            b64(sealed),
        )
        return keys

    def _aad(self) -> bytes:
        return f"anywhere.cross_signing|{self.user_id}".encode()


class CrossSigning:
    """Bootstraps the user's cross-signing keys and signs its device with them."""

    def __init__(self, secrets: CrossSigningSecrets, keys: KeysAPI) -> None:
        self.secrets = secrets
        self.keys = keys
        self.user_id = secrets.user_id

    async def bootstrap(self, device_keys: dict[str, Any]) -> str:
        """Upload the keys (idempotent: the same keys again are a no-op for Synapse) and
        the self-signing key's signature of ``device_keys``; returns the master key."""
        keys = await self.secrets.load_or_create()
        master = keys["master"]
        upload = {
            "master_key": self._key_object("master", keys["master"]),
            "self_signing_key": sign_json(
                self._key_object("self_signing", keys["self_signing"]), self.user_id, master
            ),
            "user_signing_key": sign_json(
                self._key_object("user_signing", keys["user_signing"]), self.user_id, master
            ),
        }
        await self.keys.request(
            "POST",
            "/keys/device_signing/upload",
            upload,
            what="uploading the bot's cross-signing keys",
            as_device=False,
        )
        device = {k: v for k, v in device_keys.items() if k not in ("signatures", "unsigned")}
        signed = sign_json(device, self.user_id, keys["self_signing"])
        answer = await self.keys.request(
            "POST",
            "/keys/signatures/upload",
            {self.user_id: {device["device_id"]: signed}},
            what="uploading the cross-signing signature of the bot's device",
        )
        failures = answer.get("failures") or {}
        if failures:
            raise CrossSigningRefused(f"the homeserver refused the device's signature: {failures}")
        return public_key(master)

    def _key_object(self, usage: str, key: Ed25519PrivateKey) -> dict[str, Any]:
        public = public_key(key)
        return {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


class SealedWithAnotherKey(AnywhereError):
    """The stored keys do not open with the configured pickle key."""


class CrossSigningRefused(Exception):
    """The homeserver did not take the cross-signing keys or the device's signature."""
