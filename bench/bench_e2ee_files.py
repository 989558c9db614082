"""Encrypted files into a folder room: a 100 MiB encrypted attachment (``file``) against
the same file as a plain one (``url``), with the bridge's memory watched.

Run: ``.venv/bin/python bench/bench_e2ee_files.py [--size-mib 100] [--rounds 1]``
(needs the test extras for Synapse; uses about 4 × the size of free disk in a
temporary folder, and holds the file 3 × in the benchmark's own memory).

In one run on the same machine, against a real Synapse and the bridge (drive on
``osfs://``), with one person whose client encrypts (matrix-nio with vodozemac): the
file is uploaded first (not timed; the encrypted one as ciphertext, encrypted by
matrix-nio's own code), then the time is taken from sending the file message until the
bot's *"Saved ..."* answer arrives — the bridge downloading, decrypting and checking
(encrypted) or just downloading (plain), and storing. The plain file goes into a plain
folder room, the encrypted one into a folder room with encryption turned on.

The bridge's resident memory (VmRSS from /proc) is sampled every 20 ms while the
encrypted file is saved. Targets (issue 16): encrypted ≥ 0.8 × as fast as plain (ratio
plain time / encrypted time), the bridge's memory growing by < 64 MiB. A benchmark
reports; exit 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from nio import UploadResponse
from nio.crypto.attachments import encrypt_attachment

from anywhere.bridge.testing.e2ee import EncryptedPerson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drive_common import drive_stack, temp_workdir  # noqa: E402
from bench_drive_transfer import MEMORY_LIMIT_MIB, MemoryWatch  # noqa: E402

TARGET_RATIO = 0.8
MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


async def folder_room(person: EncryptedPerson, bot: str, dm: str, name: str) -> str:
    await person.send_text(dm, f"!drive mkdir {name}")
    await person.wait_for_text(dm, bot, f"Created the folder {name}")
    while not person.invites:
        await person.sync_once()
    room = person.invites.pop()
    await person.client.join(room)
    await person.wait_joined(room, person.user_id)
    return room


async def upload(person: EncryptedPerson, data: bytes) -> str:
    response, _ = await person.client.upload(
        lambda *_: data, content_type="application/octet-stream", filesize=len(data)
    )
    assert isinstance(response, UploadResponse), response
    return response.content_uri


async def saved_after(person: EncryptedPerson, bot: str, room: str, content: dict) -> float:
    """Seconds from sending ``content`` until the bot says it saved the file."""
    mark = person.mark(room)
    started = time.perf_counter()
    await person.client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
    answer = await person.wait_for_text(room, bot, "aved", start=mark)
    elapsed = time.perf_counter() - started
    body = answer["content"]["body"]
    assert body.startswith("Saved"), body
    return elapsed


async def measure(stack, person: EncryptedPerson, data: bytes, rounds: int) -> dict[str, list]:
    bot = stack.bot_id
    dm = await person.create_encrypted_room([bot], direct=True)
    await person.wait_joined(dm, bot)
    plain_room = await folder_room(person, bot, dm, "Plain")
    secret_room = await folder_room(person, bot, dm, "Secret")
    await person.client.room_put_state(secret_room, "m.room.encryption", MEGOLM)
    await person.wait_for(secret_room, lambda e: e.get("type") == "m.room.encryption")
    info = {"size": len(data), "mimetype": "application/octet-stream"}
    results: dict[str, list] = {"plain": [], "encrypted": [], "memory": []}
    ciphertext, keys = encrypt_attachment(data)
    for n in range(rounds):
        mxc = await upload(person, data)
        content = {"msgtype": "m.file", "body": f"plain{n}.bin", "url": mxc, "info": info}
        results["plain"].append(await saved_after(person, bot, plain_room, content))

        mxc = await upload(person, ciphertext)
        file = {"url": mxc, **keys}
        content = {"msgtype": "m.file", "body": f"secret{n}.bin", "file": file, "info": info}
        async with MemoryWatch(stack.bridge.proc.pid) as watch:
            results["encrypted"].append(await saved_after(person, bot, secret_room, content))
        results["memory"].append(watch.growth_mib)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    workdir = temp_workdir("bench-e2ee-files-")
    data = os.urandom(args.size_mib << 20)
    stack = drive_stack(workdir, synapse_upload_limit=f"{args.size_mib * 2}M")
    try:
        stack.start()

        async def run() -> dict[str, list]:
            person = await EncryptedPerson.register(stack, "bench", workdir / "bench-client")
            try:
                return await measure(stack, person, data, args.rounds)
            finally:
                await person.close()

        results = asyncio.run(run())
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    plain, encrypted = (statistics.median(results[k]) for k in ("plain", "encrypted"))
    mib = args.size_mib
    ratio = plain / encrypted
    print(f"{mib} MiB into a folder room, median of {args.rounds} round(s):")
    print(
        f"  plain {plain:6.2f} s ({mib / plain:6.1f} MiB/s)   encrypted {encrypted:6.2f} s "
        f"({mib / encrypted:6.1f} MiB/s)   ratio {ratio:.2f} — target >= {TARGET_RATIO}: "
        f"{'PASS' if ratio >= TARGET_RATIO else 'FAIL'}"
    )
    growth = max(results["memory"])
    print(
        f"  bridge peak memory growth (encrypted): {growth:.1f} MiB — target < "
        f"{MEMORY_LIMIT_MIB} MiB: {'PASS' if growth < MEMORY_LIMIT_MIB else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
