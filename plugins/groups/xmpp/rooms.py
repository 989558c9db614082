"""The XMPP rooms the bridge's own occupants are in (the relay and Matrix people's
puppets), and the other occupants there as the relay sees them."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from slixmpp import JID

from ..connector import NetworkUnavailable, Refused, RemoteUser
from . import stanzas

JOIN_TIMEOUT = 10.0
LEAVE_TIMEOUT = 2.0


class MucRooms:
    """Who of ours is in which room under which nickname, the joins and leaves under way
    (completed by the presences that answer them: :meth:`answered`), and what the relay
    learns of everyone else: their real addresses when the room shows them, and who a
    renamed occupant known only by nickname was.

    ``stream()``: the XMPP stream now (None when there is none); ``relay_nickname``: the
    relay's nickname, which is always ours."""

    def __init__(self, stream: Callable[[], Any], relay_nickname: str) -> None:
        self.stream = stream
        self.relay_nickname = relay_nickname
        self._joined: dict[tuple[str, str], str] = {}  # (room, occupant JID) → nick
        self._joining: dict[tuple[str, str], asyncio.Future] = {}
        self._pending_nicks: dict[tuple[str, str], str] = {}  # joins under way
        self._leaving: dict[tuple[str, str], asyncio.Future] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._occupants: dict[str, dict[str, str | None]] = {}  # room → nick → real JID
        # room → nick → the ghost's remote ID of an occupant known only by nickname who
        # renamed themselves (so a new nickname is not a new ghost)
        self._nick_identity: dict[str, dict[str, str]] = {}

    # ----- our occupants -----
    def nick(self, room: str, occupant: str) -> str | None:
        """Our ``occupant``'s nickname in ``room``; None when not in it."""
        return self._joined.get((room, occupant))

    def is_ours(self, room: str, nick: str) -> bool:
        """Whether the room's ``nick`` is one of ours (in, or joining)."""
        if nick == self.relay_nickname:
            return True
        return any(
            r == room and n == nick
            for (r, _), n in (*self._joined.items(), *self._pending_nicks.items())
        )

    async def join(
        self, room: str, occupant: str, nick: str, *, history: int = 0, photo: str | None = None
    ) -> str:
        """Join ``room`` as ``occupant`` under ``nick`` (or a variant when taken); its
        nickname there. ``history``: how many past messages the room sends on joining;
        ``photo``: the SHA-1 of their avatar for the join presence (XEP-0153)."""
        key = (room, occupant)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._joined:
                return self._joined[key]
            for attempt in range(3):
                candidate = (
                    nick if attempt == 0 else f"{nick} [{'matrix' if attempt == 1 else attempt}]"
                )
                future = asyncio.get_running_loop().create_future()
                self._joining[key] = future
                self._pending_nicks[key] = candidate
                extra = [stanzas.muc_join(history)]
                if photo is not None:
                    extra.append(stanzas.vcard_update(photo))
                self.presence(occupant, f"{room}/{candidate}", extra=extra)
                try:
                    error = await asyncio.wait_for(future, JOIN_TIMEOUT)
                except TimeoutError as exc:
                    raise NetworkUnavailable(f"no answer joining {room}") from exc
                finally:
                    self._joining.pop(key, None)
                    self._pending_nicks.pop(key, None)
                if error is None:
                    self._joined[key] = candidate
                    return candidate
                if error != "conflict":
                    raise Refused(f"the room {room} refused to let {nick} in ({error})")
            raise Refused(f"the nickname {nick!r} is taken in {room}")

    async def leave_first(self, room: str, occupant: str, nick: str) -> None:
        """Out of ``room`` before joining it again, waiting for the room's answer (or an
        error: we were not in), which must come before the join's; none when we were not
        in the room."""
        key = (room, occupant)
        leaving = asyncio.get_running_loop().create_future()
        self._leaving[key] = leaving
        self.presence(occupant, f"{room}/{nick}", "unavailable")
        try:
            await asyncio.wait_for(leaving, LEAVE_TIMEOUT)
        except TimeoutError:
            pass  # no answer when we were not in the room: join anyway
        finally:
            self._leaving.pop(key, None)

    def leave(self, room: str, occupant: str) -> None:
        """Our ``occupant`` out of ``room``, if in."""
        nick = self._joined.pop((room, occupant), None)
        if nick is not None:
            self.presence(occupant, f"{room}/{nick}", ptype="unavailable")

    def leave_all(self, room: str | None = None) -> None:
        """All of ours out of ``room`` (of every room: None)."""
        for joined_room, occupant in list(self._joined):
            if room is None or joined_room == room:
                self.leave(joined_room, occupant)

    def rename(self, room: str, occupant: str, nick: str, extra: list[ET.Element]) -> None:
        """Our occupant, in the room already, now shows as ``nick`` with ``extra``."""
        self._joined[(room, occupant)] = nick
        self.presence(occupant, f"{room}/{nick}", extra=extra)

    def presence(
        self, pfrom: str, pto: str, ptype: str | None = None, extra: list[ET.Element] = ()
    ) -> None:
        stream = self.stream()
        if stream is None:
            return
        presence = stream.make_presence(pto=pto, pfrom=pfrom, ptype=ptype)
        for el in extra:
            presence.append(el)
        presence.send()

    def answered(self, room: str, to: str, ptype: str, info: stanzas.MucPresence) -> bool:
        """A presence from ``room`` to our occupant ``to``: it completes the join or leave
        under way. True when it answered a leave (nothing else to do with it)."""
        key = (room, to)
        leaving = self._leaving.get(key)
        if leaving is not None and ptype in ("unavailable", "error"):
            if not leaving.done():
                leaving.set_result(None)
            return True
        future = self._joining.get(key)
        if future is not None and not future.done():
            if ptype == "error":
                future.set_result(info.error)
            elif ptype != "unavailable" and "110" in info.codes:
                if "201" in info.codes:  # we created it: accept the default configuration
                    self._instant_room(room, to)
                future.set_result(None)
        return False

    def _instant_room(self, room: str, owner: str) -> None:
        stream = self.stream()
        if stream is None:
            return
        iq = stream.make_iq_set(ito=room, ifrom=owner)
        query = stanzas.element(stanzas.NS_MUC_OWNER, "query")
        query.append(ET.Element("{jabber:x:data}x", {"type": "submit"}))
        iq.append(query)
        iq.send()

    def disconnected(self) -> None:
        """The stream is gone, and every room with it: joins and leaves under way fail."""
        self._joined.clear()
        self._occupants.clear()
        for future in (*self._joining.values(), *self._leaving.values()):
            if not future.done():
                future.set_exception(NetworkUnavailable("disconnected"))
        self._joining.clear()
        self._leaving.clear()

    # ----- everyone else, as the relay sees them -----
    def saw(self, room: str, nick: str, present: bool, real_jid: str | None) -> None:
        """The room's ``nick`` is there (with ``real_jid`` when the room shows it) or not."""
        occupants = self._occupants.setdefault(room, {})
        if present:
            occupants[nick] = real_jid
        else:
            occupants.pop(nick, None)

    def real_jid(self, room: str, nick: str) -> str | None:
        return self._occupants.get(room, {}).get(nick)

    def renamed(self, room: str, nick: str, new_nick: str) -> None:
        """An occupant known only by nickname renamed themselves: the same ghost."""
        names = self._nick_identity.setdefault(room, {})
        names[new_nick] = names.pop(nick, f"{room}/{nick}")

    def gone(self, room: str, nick: str) -> None:
        """The occupant left: their nickname may be someone else's next."""
        self._nick_identity.get(room, {}).pop(nick, None)

    def occupant_user(
        self, room: str, nick: str, real_jid: str | None, occupant: str | None
    ) -> RemoteUser:
        """The person behind a room occupant: their address if the room shows it, else
        the room's stable occupant ID (so a nickname change keeps the same ghost)."""
        if real_jid:
            return RemoteUser(JID(real_jid).bare, nick)
        if occupant:
            return RemoteUser(f"{room}/~{occupant}", nick)
        return RemoteUser(self._nick_identity.get(room, {}).get(nick, f"{room}/{nick}"), nick)
