"""Relay latency and throughput of the XMPP bridge, against a Matrix-to-Matrix hop.

Run: ``.venv/bin/python bench/bench_groups.py [--messages 100] [--seconds 3]``.
Needs Prosody (``apt-get install prosody``) and the test extras (a real Synapse).

It starts a real Synapse, the bridge as a process (groups plugin, XMPP component,
logging at WARNING) and a real Prosody, links a group to a multi-user chat with one XMPP
person (slixmpp) and two Matrix people, then measures, one message at a time:

* Matrix → Matrix: a message between two Matrix people in a plain room (the reference);
* Matrix → XMPP and XMPP → Matrix through the portal;

each as the time from the send call to the receiver seeing it (Matrix receivers
long-poll ``/sync``; XMPP receivers get a pushed stanza). It measures what Synapse itself takes
into one room, one request at a time and with 8 in flight (its ceiling for one room,
with its CPU use). Then it offers XMPP → Matrix
traffic through the one portal at rising rates and reports the highest rate that was
delivered completely with p95 latency still under 5 × the idle relay p95 + 50 ms.

Targets (issue 6): relay latency ≤ 2.0 × the Matrix hop (p50 and p95), and ≥ 200
messages/s through one portal.

``--history N`` measures only the history shown when a room is linked (issue 14): N
messages said in a multi-user chat (kept by Prosody's ``muc_mam``), then the chat linked
with ``history_on_link: N``; the time from the link command to the last of them in the
Matrix room, and events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anywhere.bridge.testing.stack import Stack  # noqa: E402
from anywhere.plugins.groups.xmpp.testing import INSTALL_HINT, Prosody, XmppPerson  # noqa: E402

LATENCY_RATIO_TARGET = 2.0
RATE_TARGET = 200
RATES = (10, 20, 30, 40, 50, 60, 70, 80, 100, 150, 200, 400)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class SyncWatcher:
    """A Matrix person's client long-polling /sync, noting when each body first shows."""

    def __init__(self, homeserver: str, token: str) -> None:
        self.url = f"{homeserver}/_matrix/client/v3/sync"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.seen: dict[str, float] = {}
        self.http = aiohttp.ClientSession()
        self.since: str | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._poll(0)
        self.task = asyncio.create_task(self._run())

    async def _poll(self, timeout_ms: int) -> None:
        params = {"timeout": str(timeout_ms), "filter": '{"room":{"timeline":{"limit":1000}}}'}
        if self.since:
            params["since"] = self.since
        async with self.http.get(self.url, params=params, headers=self.headers) as resp:
            body = await resp.json()
        now = time.perf_counter()
        self.since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                text = event.get("content", {}).get("body")
                if isinstance(text, str):
                    self.seen.setdefault(text, now)

    async def _run(self) -> None:
        while True:
            await self._poll(30000)

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
        await self.http.close()


async def send_matrix(http: aiohttp.ClientSession, homeserver: str, token: str, room: str, body):
    url = f"{homeserver}/_matrix/client/v3/rooms/{room}/send/m.room.message/b{time.time_ns()}"
    async with http.put(
        url, json={"msgtype": "m.text", "body": body}, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200, await resp.text()


async def send_many(http, homeserver: str, token: str, room: str, prefix: str, count: int):
    for i in range(count):
        await send_matrix(http, homeserver, token, room, f"{prefix} {i}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_seen(seen: dict[str, float], body: str, timeout: float = 30.0) -> float:
    deadline = time.perf_counter() + timeout
    while body not in seen:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{body!r} never arrived")
        await asyncio.sleep(0.0005)
    return seen[body]


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    prosody = Prosody(workdir / "prosody", level="warn")
    prosody.add_user("xena", "xena-password")
    prosody.start()
    settings = {
        "groups": {
            "xmpp": {
                "enabled": True,
                "component_jid": prosody.component,
                "secret": prosody.secret,
                "port": prosody.component_port,
            }
        }
    }
    extra = {
        "bridge": {"permissions": {"localhost": "user"}},
        "logging": {"level": "WARNING"},
    }
    stack = Stack(workdir / "stack", ["basics", "groups"], settings, extra)
    stack.start()
    people = []
    try:
        alice = await stack.user("alice")
        bob = await stack.user("bob")
        people += [alice, bob]
        hs = stack.synapse.url
        xena = XmppPerson(f"xena@{prosody.domain}", "xena-password", prosody.c2s_port)
        await xena.connect()
        room = f"bench@{prosody.muc}"
        await xena.join(room, "Xena")
        arrivals: dict[str, float] = {}
        xena.client.add_event_handler(
            "message", lambda m: arrivals.setdefault(m["body"], time.perf_counter())
        )

        # the portal: a group linked to the room, Alice in it
        dm = await alice.dm(stack.bot_id)
        await alice.send_text(dm, "!group create Bench")
        reply = await alice.wait_for_notice(dm, stack.bot_id, "Created")
        portal = next(w for w in reply["content"]["body"].split() if w.startswith("!"))
        portal = portal.rstrip(".:,")
        await alice.client.join(portal)
        await alice.send_text(portal, f"!group link xmpp:{room}")
        await alice.wait_for_notice(portal, stack.bot_id, "Linked")
        # the reference: a plain room between Alice and Bob
        plain = await alice.create_room([bob.user_id])
        await bob.client.join(plain)

        bob_watch = SyncWatcher(hs, bob.client.access_token)
        alice_watch = SyncWatcher(hs, alice.client.access_token)
        await bob_watch.start()
        await alice_watch.start()
        http = aiohttp.ClientSession()
        token = alice.client.access_token

        async def m2m(i: int) -> float:
            body = f"m2m {i}"
            start = time.perf_counter()
            await send_matrix(http, hs, token, plain, body)
            return await wait_seen(bob_watch.seen, body) - start

        async def m2x(i: int) -> float:
            body = f"m2x {i}"
            start = time.perf_counter()
            await send_matrix(http, hs, token, portal, body)
            return await wait_seen(arrivals, body) - start

        async def x2m(i: int) -> float:
            body = f"x2m {i}"
            start = time.perf_counter()
            xena.send(room, body, "groupchat")
            return await wait_seen(alice_watch.seen, body) - start

        for func in (m2m, m2x, x2m):
            for i in range(5):  # warm-up: ghosts, joins, caches
                await func(-1 - i)
        results: dict[str, list[float]] = {"m2m": [], "m2x": [], "x2m": []}
        for i in range(args.messages):  # interleaved, so drift hits all three alike
            for name, func in (("m2m", m2m), ("m2x", m2x), ("x2m", x2m)):
                results[name].append(await func(i))

        print(f"latency over {args.messages} messages each, one at a time (ms):")
        ref = results["m2m"]
        for name, label in (
            ("m2m", "Matrix → Matrix (reference)"),
            ("m2x", "Matrix → XMPP"),
            ("x2m", "XMPP → Matrix"),
        ):
            values = results[name]
            p50, p95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
            line = f"  {label:30s} p50 {p50:7.1f}  p95 {p95:7.1f}"
            if name != "m2m":
                r50 = pct(values, 0.5) / pct(ref, 0.5)
                r95 = pct(values, 0.95) / pct(ref, 0.95)
                ok = "PASS" if max(r50, r95) <= LATENCY_RATIO_TARGET else "FAIL"
                line += f"  ratio p50 {r50:4.2f} p95 {r95:4.2f}  {ok} (≤ {LATENCY_RATIO_TARGET})"
            print(line)

        count = 100
        start = time.perf_counter()
        for i in range(count):
            await send_matrix(http, hs, token, plain, f"ceiling {i}")
        ceiling = count / (time.perf_counter() - start)
        print(
            f"reference: one Matrix client sending into one room, one request at a time: "
            f"{ceiling:.1f} messages/s (each send waits for Synapse to persist the event)"
        )
        # What the homeserver can take into one room at all, order not kept: 8 requests
        # in flight (Synapse creates up to 5 events per room at once), Synapse's CPU
        # time read from /proc.
        in_flight, per_sender = 8, 50
        cpu_before = process_cpu_seconds(stack.synapse.pid)
        start = time.perf_counter()
        await asyncio.gather(
            *(send_many(http, hs, token, plain, f"flood {k}", per_sender) for k in range(in_flight))
        )
        elapsed = time.perf_counter() - start
        busy = (process_cpu_seconds(stack.synapse.pid) - cpu_before) / elapsed
        print(
            f"reference: the same room with {in_flight} requests in flight (order not kept): "
            f"{in_flight * per_sender / elapsed:.1f} messages/s, Synapse busy "
            f"{100 * busy:.0f}% of one CPU — the homeserver's ceiling for one room here"
        )

        idle_p95 = pct(results["x2m"], 0.95)
        limit = 5 * idle_p95 + 0.05
        best = 0
        print(f"throughput XMPP → Matrix through one portal, {args.seconds} s per rate:")
        for rate in RATES:
            count = int(rate * args.seconds)
            sent: dict[str, float] = {}
            start = time.perf_counter()
            for i in range(count):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = f"rate{rate} {i}"
                sent[body] = time.perf_counter()
                xena.send(room, body, "groupchat")
            deadline = time.perf_counter() + max(10.0, args.seconds * 3)
            while time.perf_counter() < deadline and not all(b in alice_watch.seen for b in sent):
                await asyncio.sleep(0.01)
            got = [alice_watch.seen[b] - t for b, t in sent.items() if b in alice_watch.seen]
            span = max(alice_watch.seen[b] for b in sent if b in alice_watch.seen) - start
            delivered = len(got) / max(span, 1e-9)
            p95 = pct(got, 0.95) if got else float("inf")
            kept_up = len(got) == count and p95 <= limit
            print(
                f"  offered {rate:4d}/s: delivered {len(got)}/{count} at {delivered:6.1f}/s, "
                f"p95 {p95 * 1000:8.1f} ms  {'ok' if kept_up else 'latency climbs'}"
            )
            if not kept_up:
                break
            best = rate
        verdict = "PASS" if best >= RATE_TARGET else "FAIL"
        print(f"sustained through one portal: {best} messages/s  {verdict} (≥ {RATE_TARGET})")
        await http.close()
        await bob_watch.close()
        await alice_watch.close()
        await xena.close()
    finally:
        for person in people:
            await person.close()
        stack.stop()
        prosody.stop()


async def measure_history(args: argparse.Namespace, workdir: Path) -> None:
    count = args.history
    prosody = Prosody(workdir / "prosody", level="warn")
    prosody.add_user("xena", "xena-password")
    prosody.start()
    settings = {
        "groups": {
            "xmpp": {
                "enabled": True,
                "component_jid": prosody.component,
                "secret": prosody.secret,
                "port": prosody.component_port,
                "history_on_link": count,
            }
        }
    }
    extra = {"bridge": {"permissions": {"localhost": "user"}}, "logging": {"level": "WARNING"}}
    stack = Stack(workdir / "stack", ["basics", "groups"], settings, extra)
    stack.start()
    alice = None
    try:
        alice = await stack.user("alice")
        xena = XmppPerson(f"xena@{prosody.domain}", "xena-password", prosody.c2s_port)
        await xena.connect()
        room = f"history@{prosody.muc}"
        await xena.join(room, "Xena")
        mark = xena.mark()
        for i in range(count):
            xena.send(room, f"history {i}", "groupchat")
        await xena.wait_for(lambda m: m["body"] == f"history {count - 1}", 120, mark)
        dm = await alice.dm(stack.bot_id)
        await alice.send_text(dm, "!group create History")
        reply = await alice.wait_for_notice(dm, stack.bot_id, "Created")
        portal = next(w for w in reply["content"]["body"].split() if w.startswith("!"))
        portal = portal.rstrip(".:,")
        await alice.client.join(portal)
        watch = SyncWatcher(stack.synapse.url, alice.client.access_token)
        await watch.start()
        start = time.perf_counter()
        await alice.send_text(portal, f"!group link xmpp:{room}")
        last = await wait_seen(watch.seen, f"history {count - 1}", timeout=600)
        seconds = last - start
        shown = sum(1 for i in range(count) if f"history {i}" in watch.seen)
        print(
            f"history on link: {shown}/{count} archived messages in the Matrix room "
            f"{seconds:.2f} s after the link command ({shown / seconds:.1f} events/s)"
        )
        await watch.close()
        await xena.close()
    finally:
        if alice is not None:
            await alice.close()
        stack.stop()
        prosody.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="measure only the history shown when a room with N archived messages is linked",
    )
    args = parser.parse_args()
    if shutil.which("prosody") is None:
        print(INSTALL_HINT)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench_groups_"))
    try:
        asyncio.run(measure_history(args, workdir) if args.history else measure(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
