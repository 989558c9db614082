"""Exactly once on PostgreSQL too: the crash and restart tests of test_e2e_xmpp.py again,
with the bridge's database (inbox, portals, message map, outbox) on the PostgreSQL at
127.0.0.1:5432 instead of SQLite."""

from __future__ import annotations

import asyncio

import pytest

from anywhere.bridge.testing.fixtures import create_postgres_database, drop_postgres_database

from .conftest import make_xmpp_stack
from .test_e2e_xmpp import (  # noqa: F401  (collected here again, against this module's stack)
    test_a_bridge_sigkill_loses_and_doubles_nothing,
    test_a_prosody_restart_mid_conversation_delivers_everything_once,
    test_a_room_that_said_more_than_its_history_while_the_bridge_was_down,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def postgres_url():
    url = asyncio.run(create_postgres_database())
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(url))


@pytest.fixture(scope="module")
def xmpp_stack(tmp_path_factory, prosody, postgres_url):
    stack = make_xmpp_stack(tmp_path_factory.mktemp("xmpp_bridge_pg"), prosody, postgres_url)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
