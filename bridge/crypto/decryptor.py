"""Megolm decryption in a process of its own, working ahead of dispatch.

Decrypting a room event is mostly verifying its sender's Ed25519 signature (~50 µs of
CPU, with the GIL held). On the event loop it adds to everything the loop does; on a
thread it fights the loop for the GIL. So it runs in a process
(:mod:`~anywhere.bridge.crypto.megolm_worker`), on the machine's other CPU: when the inbox
stores a transaction (before the homeserver gets its 200), its encrypted room events are
checked against the room keys the bot holds (:meth:`OlmMachine.sealed_megolm`: algorithm,
room, sender key) and sent to the process in one request; the process decrypts them while
the loop handles the transactions before it and receives the next. When the inbox
dispatches an event, its answer is taken, and accepted on the loop with every check as
when decrypting there (:meth:`OlmMachine.accept_megolm`: the replay claim by session,
index and event id; the room named in the payload). Whatever the process could not
decrypt (no key yet, a key that arrived later, a forgery) is decrypted again on the loop,
which decides as before: the process only ever saves work.

The process is given the room keys it needs (pickled with a key made for it, never the
bridge's pickle key) and keeps nothing on disk: the database stays the truth. When it
cannot be started, or dies, the events sent to it are decrypted on the loop (a log line
says so) and it is started again for the next transaction.
"""

from __future__ import annotations

import asyncio
import collections
import pickle
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from . import megolm_worker
from .machine import DecryptionError, OlmMachine, SealedMegolm
from .store import MEMORY_LIMIT

log = structlog.get_logger("anywhere.crypto")

#: After the process could not be started, how long events are decrypted on the loop
#: before it is tried again.
RESTART_SECONDS = 5.0
#: Events sent ahead and not dispatched yet (kept for their room key, or handled from
#: the database instead): past this many the oldest are forgotten (decrypted on the loop).
AHEAD_LIMIT = 20_000
#: How long the process has to end at shutdown before it is killed.
STOP_SECONDS = 5.0


class WorkerGone(Exception):
    """The decryption process ended or could not be reached."""


class MegolmWorker:
    """The decryption process and the requests waiting for its answers (answered in
    order)."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._key = secrets.token_bytes(32)
        self._pending: collections.deque[asyncio.Future] = collections.deque()
        self._sent: dict[str, Any] = {}  # session id -> the session object it was given
        self._reader: asyncio.Task | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self._reader is not None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(megolm_worker.__file__)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._send(("key", self._key))
        self._reader = asyncio.create_task(self._read(), name="anywhere-megolm-answers")
        log.info("Megolm decryption process started", pid=self.proc.pid)

    def _send(self, request: Any) -> None:
        megolm_worker.write_frame(self.proc.stdin, request)

    async def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            while True:
                header = await stdout.readexactly(megolm_worker.HEADER.size)
                (size,) = megolm_worker.HEADER.unpack(header)
                answer = pickle.loads(await stdout.readexactly(size))  # noqa: S301 - ours
                future = self._pending.popleft()
                if not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # it ended
        except Exception:
            log.exception("unreadable answer from the Megolm decryption process")
            self.stop()
        finally:
            self._reader = None
            while self._pending:
                future = self._pending.popleft()
                if not future.done():
                    future.set_exception(WorkerGone())

    def open(self, sealed: list[SealedMegolm]) -> asyncio.Future:
        """A future of the outcomes (:func:`megolm_worker.open_megolm`) of these messages."""
        if not self.alive or self.proc.stdin.is_closing():
            raise WorkerGone
        if len(self._sent) >= MEMORY_LIMIT:
            self._send(("forget",))
            self._sent.clear()
        for message in sealed:
            if self._sent.get(message.session_id) is not message.session:
                pickled = message.session.pickle(self._key)
                self._send(("session", message.session_id, pickled))
                self._sent[message.session_id] = message.session
        self._send(("open", [(message.session_id, message.ciphertext) for message in sealed]))
        future = asyncio.get_running_loop().create_future()
        # an answer nobody waits for any more (its events were handled otherwise) is fine
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._pending.append(future)
        return future

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()  # it ends at the end of its input

    async def wait(self) -> None:
        """Until it has ended (killed if it does not end at the end of its input)."""
        if self.proc is None:
            return
        self.stop()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_SECONDS)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class MegolmDecryptor:
    """Decrypts the encrypted room events given to one machine (the bot's, whose device
    the room keys are shared with) in the decryption process, ahead of dispatch."""

    def __init__(self, machine: OlmMachine, needs_key: Callable[[dict[str, Any]], bool]) -> None:
        self.machine = machine
        self.needs_key = needs_key
        self._worker: MegolmWorker | None = None
        self._failed_at: float | None = None
        # id(raw event) -> (the event, what was sent for it, its request's answer, position)
        self._ahead: dict[int, tuple[dict[str, Any], SealedMegolm, asyncio.Future, int]] = {}

    @property
    def pid(self) -> int | None:
        """The decryption process's id while it runs."""
        worker = self._worker
        return worker.proc.pid if worker is not None and worker.alive else None

    async def _running(self) -> MegolmWorker | None:
        if self._worker is not None and self._worker.alive:
            return self._worker
        if self._failed_at is not None and time.monotonic() - self._failed_at < RESTART_SECONDS:
            return None
        self._failure("it ended")  # when one ran
        self._worker = MegolmWorker()
        try:
            await self._worker.start()
        except (OSError, ValueError) as exc:
            self._failure(f"could not start it: {type(exc).__name__}: {exc}")
            self._failed_at = time.monotonic()
            return None
        self._failed_at = None
        return self._worker

    def _failure(self, reason: str) -> None:
        if self._worker is None:
            return  # already said
        log.warning(
            "Megolm decryption process unavailable: decrypting on the event loop, and "
            "starting it again for the next transaction",
            reason=reason,
        )
        self._worker.stop()
        self._worker = None

    async def ahead(self, events: list[Any]) -> None:
        """Start decrypting a stored transaction's encrypted room events (``events``: the
        dicts the inbox will dispatch, in order); what cannot be sent (no key yet) is left
        to :meth:`decrypt`."""
        sealed: list[tuple[dict[str, Any], SealedMegolm]] = []
        looked_up: dict[str, Any] = {}  # room keys read for this transaction
        for raw in events:
            if not isinstance(raw, dict) or not self.needs_key(raw):
                continue
            try:
                sealed.append((raw, await self.machine.sealed_megolm(raw, looked_up)))
            except DecryptionError:
                continue
        if not sealed:
            return
        worker = await self._running()
        if worker is None:
            return
        try:
            answer = worker.open([message for _, message in sealed])
        except (WorkerGone, ConnectionError, RuntimeError):
            self._failure("it ended")
            return
        if len(self._ahead) + len(sealed) > AHEAD_LIMIT:
            self._ahead.clear()
        for position, (raw, message) in enumerate(sealed):
            self._ahead[id(raw)] = (raw, message, answer, position)

    async def decrypt(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The plaintext ``{type, content}`` of an encrypted room event (raises
        DecryptionError, MissingKey when its room key has not arrived)."""
        entry = self._ahead.pop(id(raw), None)
        if entry is None or entry[0] is not raw:
            return await self.machine.decrypt_megolm(raw)
        _, sealed, answer, position = entry
        opened = None
        try:
            outcome = (await answer)[position]
        except WorkerGone:
            self._failure("it ended")
        else:
            if outcome[0] == "ok":
                opened = sealed.opened(outcome)
        if opened is None:
            # not decrypted there: decided here, with the room key held now (a better one
            # may have arrived since)
            return await self.machine.decrypt_megolm(raw)
        return await self.machine.accept_megolm(raw, sealed, opened)

    async def stop(self) -> None:
        self._ahead = {}
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.wait()
