"""The bridge's own room messages as the rooms reflect them back: a message is the room's
only once it came back (so the outbox keeps it until then), and one the room already has
(sent before a crash) is not sent twice."""

from __future__ import annotations

import asyncio

from ..connector import NetworkUnavailable


class Reflections:
    def __init__(self) -> None:
        self._in_room: set[tuple[str, str]] = set()  # (room, id) of ours seen there
        # (room, id) of sent room messages → waiting for the room to reflect them
        self._waiting: dict[tuple[str, str], asyncio.Future] = {}

    def has(self, room: str, stanza_id: str) -> bool:
        """Whether ``room`` has shown our message ``stanza_id`` (live or archived)."""
        return (room, stanza_id) in self._in_room

    def remember(self, room: str, stanza_id: str) -> None:
        """Our message ``stanza_id`` is in the room's archive."""
        self._in_room.add((room, stanza_id))

    def reflected(self, room: str, stanza_id: str) -> None:
        """The room reflected our message ``stanza_id``: it is the room's."""
        self._in_room.add((room, stanza_id))
        waiting = self._waiting.pop((room, stanza_id), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def expect(self, room: str, stanza_id: str) -> asyncio.Future:
        """A future the room's reflection of ``stanza_id`` completes; :meth:`forget` it
        when done waiting."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[(room, stanza_id)] = future
        return future

    def forget(self, room: str, stanza_id: str) -> None:
        self._waiting.pop((room, stanza_id), None)

    def disconnected(self) -> None:
        """Whatever waits for a reflection fails: the outbox keeps those messages."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NetworkUnavailable("disconnected"))
        self._waiting.clear()
