"""read_ahead (plugins/drive/streams.py), used by WebDAV uploads: the same chunks in the
same order, the source's error where it happened, and closing early closes the source.
And the WebDAV tests' tools: a missing litmus or rclone skips, but fails under CI=true."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from anywhere.plugins.drive.streams import read_ahead


async def test_chunks_come_in_order_and_all_of_them():
    async def source():
        for i in range(10):
            yield bytes([i])

    assert [c async for c in read_ahead(source())] == [bytes([i]) for i in range(10)]


async def test_an_error_of_the_source_is_raised_after_the_chunks_before_it():
    async def source():
        yield b"a"
        raise ConnectionResetError("cut off")

    got = []
    with pytest.raises(ConnectionResetError, match="cut off"):
        async for chunk in read_ahead(source()):
            got.append(chunk)
    assert got == [b"a"]


async def test_closing_early_stops_reading_and_closes_the_source():
    produced, closed = [], asyncio.Event()

    async def source():
        try:
            for i in range(1000):
                produced.append(i)
                yield b"x"
        finally:
            closed.set()

    async with contextlib.aclosing(read_ahead(source(), depth=2)) as chunks:
        async for _ in chunks:
            break
    await asyncio.wait_for(closed.wait(), 5)
    assert len(produced) <= 4  # one consumed, at most two queued, one waiting to be


def test_a_missing_litmus_or_rclone_skips_but_fails_under_ci(monkeypatch):
    from . import webdav_client

    monkeypatch.setattr(webdav_client.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="litmus is not installed"):
        webdav_client.need_tool("litmus")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="rclone is not installed.*CI=true"):
        webdav_client.need_tool("rclone")
