"""The Megolm decryption process (:class:`~anywhere.bridge.crypto.decryptor.MegolmDecryptor`
starts it as a script, with the bridge's interpreter, so that it imports vodozemac and
nothing of the bridge).

It reads frames from stdin and answers on stdout; a frame is a 4-byte big-endian length
and a pickle (both ends are the bridge: nothing else writes to these pipes). Requests:
``("key", bytes)`` first, the key the sessions it is given are pickled with (made for
this process, never the bridge's pickle key); ``("session", session_id, pickle)``, a room
key to decrypt with (again when the bridge holds a better one); ``("forget",)``, drop
them all; ``("open", [(session_id, ciphertext), ...])``, answered with one outcome per
message (:func:`open_megolm`). It keeps nothing on disk and ends at the end of its input
(the bridge stopped or died).

This module imports only vodozemac and the standard library: the bridge imports
:func:`open_megolm` from it too, so both decrypt and classify failures the same way.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import Any, BinaryIO

import vodozemac

HEADER = struct.Struct(">I")


def open_megolm(session: vodozemac.InboundGroupSession, ciphertext: str) -> tuple:
    """Decrypt and verify (the sender's signature, the MAC) one Megolm message:
    ``("ok", plaintext, message_index)``, ``("missing",)`` (an index before the key's
    first), ``("forged",)`` (does not verify) or ``("malformed", exception name)``.
    Moves only the session's in-memory ratchet cache on (it still decrypts earlier
    indexes)."""
    try:
        decrypted = session.decrypt(vodozemac.MegolmMessage.from_base64(ciphertext))
    except vodozemac.MegolmDecryptionException as exc:
        return ("missing",) if "unknown message index" in str(exc) else ("forged",)
    except Exception as exc:
        return ("malformed", type(exc).__name__)
    return ("ok", decrypted.plaintext, decrypted.message_index)


def write_frame(out: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(HEADER.pack(len(data)) + data)


def read_frame(stream: BinaryIO) -> Any:
    """The next frame, or None at the end of the input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - written by the bridge that started us


def serve(stream: BinaryIO, out: BinaryIO) -> None:
    key = b""
    sessions: dict[str, vodozemac.InboundGroupSession] = {}
    while (request := read_frame(stream)) is not None:
        kind = request[0]
        if kind == "key":
            key = request[1]
        elif kind == "session":
            sessions[request[1]] = vodozemac.InboundGroupSession.from_pickle(request[2], key)
        elif kind == "forget":
            sessions.clear()
        elif kind == "open":
            outcomes = []
            for session_id, ciphertext in request[1]:
                session = sessions.get(session_id)
                outcome = ("missing",) if session is None else open_megolm(session, ciphertext)
                outcomes.append(outcome)
            write_frame(out, outcomes)
            out.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
