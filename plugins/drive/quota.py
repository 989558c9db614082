"""Quota: what an owner uses, and what uploads under way hold of it.

The charge itself is atomic with the version (``Tree.add_version``): two uploads that
finish together cannot both slip under the quota. But an upload is only charged once
all of it is stored, so without more, parallel uploads could each write up to the
whole free space first. An upload therefore *reserves* quota as its bytes arrive (all
at once when it declares its size) and is refused as soon as its bytes would not fit
beside what is used and what other uploads hold. The reservation ends when the upload
is recorded (its size is then charged) or fails.

Reservations live in the bridge process, as uploads do (see ``Drive.blob_lock``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .model import human_size

NEARLY_FULL = 0.9


@dataclass(frozen=True)
class Quota:
    used: int
    limit: int

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def nearly_full(self) -> bool:
        """At least ``NEARLY_FULL`` of the quota is used: time to say so."""
        return self.used >= NEARLY_FULL * self.limit

    def describe(self) -> str:
        return (
            f"{100 * self.used / self.limit:.0f}% full: {human_size(self.used)} of "
            f"{human_size(self.limit)}"
        )


class Reservations:
    """Bytes held by uploads under way, per owner.

    Reservations are exact (an upload holds what it has written, or announced), so
    parallel uploads that fit together all go through. The owner's usage is read from
    the database when an upload starts and again before refusing one; in between it is
    kept here, plus what finished uploads charged (a charge by another path — a move, a
    revert — can make it low for a moment: the charge with the version, atomic in the
    database, still refuses what does not fit)."""

    def __init__(self, usage: Callable[[str], Awaitable[int]], limit: int) -> None:
        self._usage = usage
        self.limit = limit
        self._held: dict[str, int] = {}
        self._used: dict[str, int] = {}  # owners with uploads under way
        self._lock = asyncio.Lock()

    def held(self, owner: str) -> int:
        return self._held.get(owner, 0)

    def limit_beside(self, owner: str, own: Reservation | None = None) -> int:
        """The quota left for charging ``owner`` beside what other uploads hold."""
        others = self.held(owner) - (own.bytes if own is not None else 0)
        return max(0, self.limit - others)

    def start(self, owner: str) -> Reservation:
        return Reservation(self, owner)

    async def grow(self, reservation: Reservation, total: int) -> bool:
        """Let ``reservation`` hold ``total`` bytes, if they fit (see :meth:`Reservation.cover`)."""
        async with self._lock:
            extra = total - reservation.bytes
            if extra <= 0:
                return True
            owner = reservation.owner
            if reservation.first or owner not in self._used:
                self._used[owner] = await self._usage(owner)
                reservation.first = False
            if self._used[owner] + self.held(owner) + extra > self.limit:
                self._used[owner] = await self._usage(owner)  # up to date before refusing
                if self._used[owner] + self.held(owner) + extra > self.limit:
                    return False
            reservation.bytes += extra
            self._held[owner] = self.held(owner) + extra
            return True

    def release(self, reservation: Reservation) -> None:
        """End ``reservation``: what it charged stays counted as used until the owner's
        last upload ends."""
        owner = reservation.owner
        left = self.held(owner) - reservation.bytes
        if owner in self._used:
            self._used[owner] += reservation.charged
        reservation.bytes = reservation.charged = 0
        if left > 0:
            self._held[owner] = left
        else:
            self._held.pop(owner, None)
            self._used.pop(owner, None)


class Reservation:
    """What one upload holds; use it as ``async with`` so that it always ends."""

    def __init__(self, book: Reservations, owner: str) -> None:
        self.book = book
        self.owner = owner
        self.bytes = 0
        self.charged = 0  # set once the upload is recorded and its size charged
        self.first = True

    async def cover(self, total: int) -> bool:
        """Hold at least ``total`` bytes; False (holding what it held) when they do not
        fit beside what is used and what other uploads hold."""
        return await self.book.grow(self, total)

    def release(self) -> None:
        self.book.release(self)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
