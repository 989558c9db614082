"""Encrypted attachments v2 (bridge/crypto/attachments.py), checked against matrix-nio's
own implementation (pycryptodome underneath): pure logic, no homeserver."""

from __future__ import annotations

import base64
import os

import pytest
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

from anywhere.bridge.crypto.attachments import (
    AttachmentError,
    AttachmentHashMismatch,
    EncryptedFile,
    Encryptor,
    decrypt,
)


async def chunks_of(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def collect(stream) -> bytes:
    return b"".join([chunk async for chunk in stream])


def nio_file(data: bytes) -> tuple[bytes, dict]:
    """Ciphertext and the ``file`` object as matrix-nio's client makes them."""
    ciphertext, keys = encrypt_attachment(data)
    return ciphertext, {"url": "mxc://example.org/abc", **keys}


@pytest.mark.parametrize("chunk", [4096, 70_000])  # on the loop, and in a thread
async def test_a_file_encrypted_by_another_client_decrypts_streamed(chunk):
    data = os.urandom(300_003)
    ciphertext, file = nio_file(data)
    plain = await collect(decrypt(chunks_of(ciphertext, chunk), EncryptedFile.parse(file)))
    assert plain == data


@pytest.mark.parametrize("chunk", [3000, 70_000])
async def test_what_we_encrypt_another_client_decrypts_and_the_counter_starts_at_zero(chunk):
    data = os.urandom(200_001)
    encryptor = Encryptor()
    ciphertext = await collect(encryptor.encrypt(chunks_of(data, chunk)))
    file = encryptor.file("mxc://example.org/xyz")
    assert file["v"] == "v2" and file["key"]["alg"] == "A256CTR" and file["url"].endswith("xyz")
    iv = base64.b64decode(file["iv"] + "==")
    assert len(iv) == 16 and iv[8:] == b"\x00" * 8
    assert len(ciphertext) == len(data) and ciphertext != data
    assert (
        decrypt_attachment(ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
        == data
    )
    assert await collect(decrypt(chunks_of(ciphertext), EncryptedFile.parse(file))) == data


async def test_a_changed_ciphertext_is_refused_before_its_last_chunk_is_given():
    data = os.urandom(10_000)
    ciphertext, file = nio_file(data)
    tampered = bytearray(ciphertext)
    tampered[5000] ^= 1
    given: list[bytes] = []
    with pytest.raises(AttachmentHashMismatch, match="does not match the hash"):
        async for chunk in decrypt(chunks_of(bytes(tampered), 1000), EncryptedFile.parse(file)):
            given.append(chunk)
    assert sum(map(len, given)) < len(data)  # never the whole file


async def test_a_cut_ciphertext_is_refused():
    ciphertext, file = nio_file(os.urandom(5000))
    with pytest.raises(AttachmentHashMismatch):
        await collect(decrypt(chunks_of(ciphertext[:-1]), EncryptedFile.parse(file)))


def _broken(change) -> dict:
    _, file = nio_file(b"x")
    change(file)
    return file


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.pop("key"), "has no key"),
        (lambda f: f["key"].update(alg="A128CTR"), "only 'oct'/'A256CTR'"),
        (lambda f: f["key"].update(k="AAAA"), "key is 3 bytes, not 32"),
        (lambda f: f.update(iv="AAAAAAAAAAAAAAAAAAAA"), "iv is 15 bytes, not 16"),
        (lambda f: f.pop("iv"), "has no iv"),
        (lambda f: f.update(v="v1"), "version 'v1'; only 'v2'"),
        (lambda f: f.pop("v"), "version None"),
        (lambda f: f.pop("hashes"), "has no SHA-256 hash"),
        (lambda f: f.update(url="https://example.org/x"), "no mxc:// url"),
        (lambda f: f["key"].update(k="!!not base64!!"), "key is not base64"),
    ],
)
def test_a_malformed_file_object_is_refused_saying_what_is_wrong(change, reason):
    with pytest.raises(AttachmentError, match=reason.replace("(", r"\(")):
        EncryptedFile.parse(_broken(change))
