"""Encrypted transactions: handled events/s for transactions of 100 Megolm-encrypted
messages against the same load unencrypted, through the same bridge in the same run.

Run: ``.venv/bin/python bench/bench_e2ee_ingest.py [--transactions 20] [--rounds 3]``
(needs the test extras for Synapse).

The bridge is started as ``bench_ingest.py`` starts it (``python -m anywhere run`` as its
own process, the plugins a fresh config enables, SQLite inbox, logging at WARNING,
against a real Synapse in a temporary folder), with encryption on. A person whose client
encrypts (matrix-nio with vodozemac) opens an encrypted private room with the bot and
sends one command (``!ping``), which gives the bot's device the room key over Olm, as a
client does; the bot's answer shows the key arrived. The benchmark then encrypts further messages
with that person's own outbound Megolm session (one message index each, vodozemac) and
pushes them to the bridge as Synapse would: ``PUT /_matrix/app/v1/transactions/{txn_id}``
with the hs_token, 100 ``m.room.encrypted`` events per transaction, one transaction in
flight. The plain load is the same messages as ``m.room.message`` events in an
unencrypted private room of the same two. Neither load holds commands.

Measured, for each load: from the first PUT until ``anywhere_events_handled_total`` on
``/metrics`` counts every event handed to the plugins (after decryption for the
encrypted load), and the bridge process's CPU time per event. Rounds alternate plain
and encrypted (one warm-up transaction of each first); each round is printed, then the
medians and their ratio. Target (issue 16): encrypted >= 0.5 x plain.

A benchmark reports; exit 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from nio import RoomPreset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import (  # noqa: E402
    HANDLED_METRIC,
    ProfileRecorder,
    process_cpu,
    push,
    read_metrics,
    wait_handled,
)
from ingest_report import cpu_busy, filesystem_of  # noqa: E402

from anywhere.bridge.testing.e2ee import EncryptedPerson  # noqa: E402
from anywhere.bridge.testing.stack import Stack  # noqa: E402

PER_TXN = 100
TARGET_RATIO = 0.5


@dataclass
class Run:
    seconds: float
    cpu_per_event: float | None  # bridge process, user + system
    child_cpu_per_event: float | None = None  # its child processes (decryption process)


def children_cpu(pid: int) -> float:
    """CPU seconds (user + system) the running child processes of ``pid`` have used."""
    total = 0.0
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for child in pids:
            used = process_cpu(int(child))
            total += sum(used) if used else 0.0
    return total


def message(n: int) -> dict:
    return {"msgtype": "m.text", "body": f"just chatting {n}"}


def transaction(name: str, events: list[dict]) -> tuple[str, bytes]:
    return f"{name}-{secrets.token_hex(6)}", json.dumps({"events": events}).encode()


def room_event(room_id: str, sender: str, event_type: str, content: dict, n: int) -> dict:
    return {
        "type": event_type,
        "room_id": room_id,
        "sender": sender,
        "event_id": f"$bench-{secrets.token_hex(10)}-{n}",
        "origin_server_ts": int(time.time() * 1000) + n,
        "content": content,
        "unsigned": {"age": 50},
    }


def plain_load(room_id: str, sender: str, count: int) -> list[tuple[str, bytes]]:
    return [
        transaction(
            "plain",
            [room_event(room_id, sender, "m.room.message", message(n), n) for n in range(PER_TXN)],
        )
        for _ in range(count)
    ]


def encrypted_load(person: EncryptedPerson, room_id: str, count: int) -> list[tuple[str, bytes]]:
    """The same messages, encrypted with the person's own outbound Megolm session (the
    one whose key the bot received), serialised before the clock starts."""
    olm = person.client.olm
    # The vodozemac session under matrix-nio's wrapper (which would rotate it after its
    # 100 messages: the bot has only this session's key).
    session = olm.outbound_group_sessions[room_id]._session
    sender_key = olm.account.identity_keys["curve25519"]
    bodies = []
    for _ in range(count):
        events = []
        for n in range(PER_TXN):
            plaintext = json.dumps(
                {"type": "m.room.message", "content": message(n), "room_id": room_id}
            )
            content = {
                "algorithm": "m.megolm.v1.aes-sha2",
                "sender_key": sender_key,
                "ciphertext": session.encrypt(plaintext.encode()).to_base64(),
                "session_id": session.session_id,
                "device_id": person.client.device_id,
            }
            events.append(room_event(room_id, person.user_id, "m.room.encrypted", content, n))
        bodies.append(transaction("encrypted", events))
    return bodies


async def measure(
    http: aiohttp.ClientSession,
    stack: Stack,
    load: list[tuple[str, bytes]],
    timeout: float,
    profile: ProfileRecorder | None = None,
) -> Run:
    """Seconds from the first PUT until every event of ``load`` was handled."""
    url, ops = stack.bridge.url, stack.bridge.ops_token
    token = stack.config["appservice"]["hs_token"]
    events = sum(body.count(b'"event_id"') for _, body in load)
    before = (await read_metrics(http, url, ops))[HANDLED_METRIC]
    if profile:
        profile.start()
    cpu_before = process_cpu(stack.bridge.proc.pid)
    child_before = children_cpu(stack.bridge.proc.pid)
    started = time.perf_counter()
    await push(http, url, token, load)
    done = await wait_handled(http, url, ops, before + events, timeout)
    cpu_after = process_cpu(stack.bridge.proc.pid)
    child_after = children_cpu(stack.bridge.proc.pid)
    if profile:
        profile.stop()
    cpu = None
    if cpu_before and cpu_after:
        cpu = (sum(cpu_after) - sum(cpu_before)) / events
    return Run(done - started, cpu, (child_after - child_before) / events)


async def give_bot_the_key(stack: Stack, person: EncryptedPerson) -> tuple[str, str]:
    """An encrypted private room whose Megolm key the bot holds, and a plain private room,
    each of the person and the bot. Not direct chats: there every message is a command
    and gets an answer, which would measure the bot's sends, not the ingest."""
    encrypted_room = await person.create_encrypted_room([stack.bot_id])
    await person.wait_joined(encrypted_room, stack.bot_id)
    mark = person.mark(encrypted_room)
    await person.send_text(encrypted_room, "!ping")  # shares the room key over Olm
    await person.wait_for(
        encrypted_room,
        lambda e: e.get("sender") == stack.bot_id and "pong" in json.dumps(e["content"]),
        start=mark,
    )
    plain = await person.client.room_create(invite=[stack.bot_id], preset=RoomPreset.private_chat)
    plain_room = plain.room_id
    await person.wait_joined(plain_room, stack.bot_id)
    return encrypted_room, plain_room


async def run_rounds(args: argparse.Namespace, stack: Stack, workdir: Path) -> dict:
    person = await EncryptedPerson.register(stack, "benchperson", workdir / "person")
    profile = ProfileRecorder(stack.bridge.proc.pid, args.profile) if args.profile else None
    results: dict[str, list[Run]] = {"plain": [], "encrypted": []}
    try:
        encrypted_room, plain_room = await give_bot_the_key(stack, person)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as http:
            await measure(http, stack, plain_load(plain_room, person.user_id, 1), args.timeout)
            await measure(http, stack, encrypted_load(person, encrypted_room, 1), args.timeout)
            for r in range(args.rounds):
                plain = plain_load(plain_room, person.user_id, args.transactions)
                encrypted = encrypted_load(person, encrypted_room, args.transactions)
                results["plain"].append(await measure(http, stack, plain, args.timeout))
                results["encrypted"].append(
                    await measure(http, stack, encrypted, args.timeout, profile if r == 0 else None)
                )
                events = args.transactions * PER_TXN
                print(
                    f"round {r + 1}/{args.rounds}: plain "
                    f"{events / results['plain'][-1].seconds:,.0f} handled ev/s, encrypted "
                    f"{events / results['encrypted'][-1].seconds:,.0f} handled ev/s",
                    flush=True,
                )
    finally:
        await person.close()
    return results


def report(
    args: argparse.Namespace, results: dict, plugins: list[str], workdir: Path, busy: float | None
) -> None:
    events = args.transactions * PER_TXN
    rates = {}
    print(
        f"\n{args.transactions} transactions of {PER_TXN} events per load, "
        f"{args.rounds} rounds alternating (median); bridge plugins "
        f"{'+'.join(['core', *plugins])}, {os.cpu_count()} CPUs shared with Synapse and "
        f"the load generator; SQLite on {filesystem_of(workdir)}"
    )
    for name, runs in results.items():
        rates[name] = events / statistics.median(r.seconds for r in runs)
        cpus = [r.cpu_per_event for r in runs if r.cpu_per_event is not None]
        cpu = f", bridge CPU {1e6 * statistics.median(cpus):,.0f} µs/event" if cpus else ""
        children = [r.child_cpu_per_event for r in runs if r.child_cpu_per_event is not None]
        if children and statistics.median(children) > 0:
            cpu += f" (+ {1e6 * statistics.median(children):,.0f} in its decryption process)"
        each = ", ".join(f"{events / r.seconds:,.0f}" for r in runs)
        print(f"  {name:<9} {rates[name]:8,.0f} handled events/s{cpu}  (rounds: {each})")
    cpu = {
        name: statistics.median(r.cpu_per_event for r in runs if r.cpu_per_event is not None)
        for name, runs in results.items()
        if any(r.cpu_per_event for r in runs)
    }
    if len(cpu) == 2:
        print(
            f"  bridge CPU per event, encrypted / plain: {cpu['encrypted'] / cpu['plain']:.1f}x "
            "(wall-clock rates depend on how busy the machine is; CPU per event much less)"
        )
    if busy is not None:
        print(f"  CPUs busy just before the run: {100 * busy:.0f}%")
    ratio = rates["encrypted"] / rates["plain"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"  encrypted / plain: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
    print(f"command: .venv/bin/python bench/bench_e2ee_ingest.py {' '.join(sys.argv[1:])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transactions", type=int, default=20, help="transactions per load and round (20)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the handling"
    )
    parser.add_argument(
        "--plugins",
        default=None,
        help="comma-separated plugins (default: plugins.enabled of a fresh config)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the bridge during the first encrypted round (.svg, .txt, .json)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent folder for Synapse and the bridge (default: the system's temporary "
        "folder); the SQLite inbox and crypto store live here, so its disk counts",
    )
    parser.add_argument(
        "--decrypt-worker",
        choices=("default", "true", "false"),
        default="default",
        help="encryption.decrypt_worker of the bridge (default: its default)",
    )
    args = parser.parse_args(argv)

    from anywhere.bridge.config import example_defaults

    if args.plugins is None:
        plugins = list(example_defaults()["plugins"]["enabled"])
    else:
        plugins = [name.strip() for name in args.plugins.split(",") if name.strip()]
    busy = cpu_busy()
    workdir = Path(tempfile.mkdtemp(prefix="anywhere-bench-e2ee-ingest-", dir=args.workdir))
    try:
        print("starting Synapse and the bridge ...", flush=True)
        extra: dict = {"logging": {"level": "WARNING"}}
        if args.decrypt_worker != "default":
            extra["encryption"] = {"decrypt_worker": args.decrypt_worker == "true"}
        with Stack(workdir / "stack", plugins, bridge_extra=extra) as stack:
            try:
                results = asyncio.run(run_rounds(args, stack, workdir))
            except Exception as exc:
                print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                print(f"end of the bridge log:\n{stack.bridge.tail(30)}", file=sys.stderr)
                return 1
        report(args, results, plugins, workdir, busy)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
