"""Encrypted attachments (the Matrix spec's ``EncryptedFile``, ``v: "v2"``): AES-256-CTR
with a fresh key (a JWK) and a 128-bit IV whose low 64 bits (the counter) start at zero;
the SHA-256 of the ciphertext lets the receiver check the file before using it.

Both ways are streams: a chunk in, a chunk out, never the whole file in memory; large
chunks are worked on in a thread, beside the event loop. AES comes
from the ``cryptography`` library (OpenSSL underneath): maintained, constant-time AES,
and already in the dependency tree (aiortc); vodozemac does not expose AES-CTR.

Decrypting holds back the last chunk until the hash is checked, and raises
:class:`AttachmentHashMismatch` instead of giving it: a consumer that stores chunks as
they come (the drive's blob writer) aborts on the exception and keeps nothing."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

VERSION = "v2"
ALGORITHM = "A256CTR"
#: Chunks at least this large are encrypted/decrypted in a worker thread.
OFF_LOOP_BYTES = 64 * 1024


class AttachmentError(ValueError):
    """An encrypted attachment that cannot be used; the message says what was wrong."""


class AttachmentHashMismatch(AttachmentError):
    """The downloaded ciphertext is not the one the event described (changed, truncated
    or swapped on the way)."""


def _unb64(text: Any, what: str) -> bytes:
    """Unpadded (or padded) base64, standard or URL-safe, as the spec's fields use."""
    if not isinstance(text, str) or not text:
        raise AttachmentError(f"the encrypted file has no {what}")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentError(f"the encrypted file's {what} is not base64") from exc


def _b64(data: bytes, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class EncryptedFile:
    """A checked ``file`` object of an event: where the ciphertext is and how to open it."""

    url: str
    key: bytes
    iv: bytes
    sha256: bytes

    @classmethod
    def parse(cls, file: Any) -> EncryptedFile:
        """The ``file`` of an event's content, checked; raises :class:`AttachmentError`
        naming what is missing or wrong."""
        if not isinstance(file, Mapping):
            raise AttachmentError("the event's 'file' is not an object")
        version = file.get("v")
        if version != VERSION:
            raise AttachmentError(
                f"the encrypted file is version {version!r}; only {VERSION!r} is supported "
                "(send it again from an up-to-date client)"
            )
        url = file.get("url")
        if not isinstance(url, str) or not url.startswith("mxc://"):
            raise AttachmentError("the encrypted file has no mxc:// url")
        jwk = file.get("key")
        if not isinstance(jwk, Mapping):
            raise AttachmentError("the encrypted file has no key")
        if jwk.get("kty") != "oct" or jwk.get("alg") != ALGORITHM:
            raise AttachmentError(
                f"the encrypted file's key is {jwk.get('kty')!r}/{jwk.get('alg')!r}; "
                f"only 'oct'/{ALGORITHM!r} is supported"
            )
        ops = jwk.get("key_ops")
        if isinstance(ops, list) and "decrypt" not in ops:
            raise AttachmentError("the encrypted file's key may not be used to decrypt")
        key = _unb64(jwk.get("k"), "key")
        if len(key) != 32:
            raise AttachmentError(f"the encrypted file's key is {len(key)} bytes, not 32")
        iv = _unb64(file.get("iv"), "iv")
        if len(iv) != 16:
            raise AttachmentError(f"the encrypted file's iv is {len(iv)} bytes, not 16")
        hashes = file.get("hashes")
        digest = hashes.get("sha256") if isinstance(hashes, Mapping) else None
        sha256 = _unb64(digest, "SHA-256 hash")
        if len(sha256) != 32:
            raise AttachmentError("the encrypted file's SHA-256 hash is not 32 bytes")
        return cls(url=url, key=key, iv=iv, sha256=sha256)


async def decrypt(chunks: AsyncIterable[bytes], file: EncryptedFile) -> AsyncIterator[bytes]:
    """The plaintext of ``chunks`` (the ciphertext), checked against ``file.sha256``:
    the last chunk comes only after the hash matched, else :class:`AttachmentHashMismatch`."""
    decryptor = Cipher(algorithms.AES(file.key), modes.CTR(file.iv)).decryptor()
    digest = hashlib.sha256()

    def step(chunk: bytes) -> bytes:
        digest.update(chunk)
        return decryptor.update(chunk)

    held = b""
    async for chunk in chunks:
        if not chunk:
            continue
        if held:
            yield held
        held = await _off_loop(step, chunk)
    held += decryptor.finalize()
    if digest.digest() != file.sha256:
        raise AttachmentHashMismatch(
            "the file's content does not match the hash in its message (it was changed or "
            "cut on the way); nothing was saved — send it again"
        )
    if held:
        yield held


class Encryptor:
    """Encrypts one attachment as it streams (:meth:`encrypt`); after the stream ended,
    :meth:`file` is the ``file`` object to send in place of ``url``."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._iv = os.urandom(8) + b"\x00" * 8  # the counter half starts at zero
        self._digest = hashlib.sha256()
        self._done = False

    async def encrypt(self, chunks: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
        encryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._iv)).encryptor()

        def step(chunk: bytes) -> bytes:
            out = encryptor.update(chunk)
            self._digest.update(out)
            return out

        if isinstance(chunks, bytes | bytearray):
            chunks = _once(bytes(chunks))
        async for chunk in chunks:
            yield await _off_loop(step, chunk)
        out = encryptor.finalize()
        self._digest.update(out)
        self._done = True
        if out:
            yield out

    def file(self, mxc: str) -> dict[str, Any]:
        """The spec's ``EncryptedFile`` for the ciphertext uploaded to ``mxc``."""
        if not self._done:
            raise RuntimeError("the attachment has not been encrypted to its end yet")
        return {
            "v": VERSION,
            "url": mxc,
            "key": {
                "kty": "oct",
                "alg": ALGORITHM,
                "ext": True,
                "key_ops": ["encrypt", "decrypt"],
                "k": _b64(self._key, urlsafe=True),
            },
            "iv": _b64(self._iv),
            "hashes": {"sha256": _b64(self._digest.digest())},
        }


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _off_loop(step: Callable[[bytes], bytes], chunk: bytes) -> bytes:
    """``step(chunk)``: in a worker thread when the chunk is large (OpenSSL and hashlib
    let go of the GIL), so the event loop keeps receiving the next bytes meanwhile."""
    if len(chunk) < OFF_LOOP_BYTES:
        return step(chunk)
    return await asyncio.to_thread(step, chunk)
