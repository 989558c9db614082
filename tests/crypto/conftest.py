"""Encrypted rooms end to end: people with encrypting clients (bridge/testing/e2ee.py)."""

from __future__ import annotations

import secrets

import pytest_asyncio

from bridge.testing.e2ee import EncryptedPerson


@pytest_asyncio.fixture
async def encrypted_person(anywhere_stack, tmp_path):
    """Factory: ``alice = await encrypted_person()`` registers someone whose client
    encrypts (matrix-nio with vodozemac)."""
    made: list[EncryptedPerson] = []

    async def make(name: str = "e2ee") -> EncryptedPerson:
        localpart = f"{name}_{secrets.token_hex(3)}"
        person = await EncryptedPerson.register(anywhere_stack, localpart, tmp_path / localpart)
        made.append(person)
        return person

    yield make
    for person in made:
        await person.close()
