"""Calls: set-up time, concurrent echo calls, and conference size, in one run.

Run: ``.venv/bin/python bench/bench_calls.py`` (``--help`` for the knobs).

It starts a real Synapse and the bridge (``basics``, ``policy``, ``calls``; ICE on
127.0.0.1 only) like the tests do, and plays the people with the tests' call client
(``tests/calls/calls_peer.py``: aiortc media, matrix-nio signalling, matrix-js-sdk's
habits), all in this process.

1. **Set-up time**: ``--setups`` calls to the echo bot one after the other. Per call,
   the end-to-end time from sending the invite (the caller's SDP is ready: its own ICE
   gathering is excluded, and so is matrix-js-sdk's 200 ms wait) until the caller's
   sync sees the answer; and the bridge's own time from handling the invite to the
   answer being sent (``setup_ms`` in its log). The reference is the round trip of a
   plain message through the same Synapse: ``!ping`` until the caller sees ``pong``.
   Target: set-up p50 under 150 ms.
2. **Concurrent echo calls**: for each count in ``--concurrent``, that many calls at
   once, held ``--hold`` seconds; loss is the RTP packets the callers did not get from
   the bridge (sequence gaps), and the rate is the packets per second the bridge sent
   against the 50/s of 20 ms Opus frames. A count passes with loss < 1% and rate ≥ 97%
   (the rate shows a bridge falling behind; ±1% is the error of 5 s statistics windows).
   Target: at least 20 calls.
3. **Conference**: for each size in ``--conference``, that many people call one
   conference user; per person the same loss and rate, and the mixer's own figures
   (ticks started more than one frame late in steady state, i.e. not within 2 s of a
   join, from the bridge's log). A size passes with no late tick, loss < 1% and a rate
   within 97-103% (no drift). Target: 10 people.

Caveat: the callers' aiortc peers (encoding, decoding, DTLS, SRTP) run in this process
on the same CPUs as the bridge; the CPU time of each is printed, since on a small
machine the load generator may be what runs out first.

A benchmark reports; it is not a test: exit code 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "calls")]

from calls_peer import CallPeer  # noqa: E402

from anywhere.bridge.testing.stack import MatrixUser, Stack  # noqa: E402
from anywhere.plugins.calls.ice import limit_gathering  # noqa: E402

SETUP_TARGET_MS = 150
CONCURRENT_TARGET = 20
CONFERENCE_TARGET = 10
PACKETS_PER_SECOND = 50


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_call_second(cpu: float, calls: int, hold: float) -> str:
    """Bridge CPU per second of one call, over the window from placing the calls to the
    end of the measurement (set-up included, so an upper bound)."""
    return f"{1000 * cpu / (calls * (hold + 2.0)):.0f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bot = stack.bot_id
        self.bridge_pid = stack.bridge.proc.pid
        self.users: list[MatrixUser] = []

    async def person(self) -> MatrixUser:
        user = await self.stack.user()
        self.users.append(user)
        return user

    async def person_with_dm(self) -> tuple[MatrixUser, str]:
        user = await self.person()
        return user, await user.dm(self.bot)

    async def close(self) -> None:
        for user in self.users:
            await user.close()

    def log_values(self, key: str) -> list[float]:
        text = self.stack.bridge.log_path.read_text("utf-8", "replace")
        return [float(v) for v in re.findall(rf"{key}=([0-9.]+)", text)]

    # ----- 1. set-up time -----
    async def setup_time(self, count: int) -> None:
        user, room = await self.person_with_dm()
        rtts = []
        for i in range(count):
            mark = user.mark(room)
            started = time.perf_counter()
            await user.send_text(room, f"!ping {i}")
            await user.wait_for_notice(room, self.bot, f"pong {i}", start=mark)
            rtts.append((time.perf_counter() - started) * 1000)
        before = len(self.log_values("setup_ms"))
        setups = []
        for _ in range(count):
            call = CallPeer(user, room)
            await call.place(invitee=self.bot, invite_delay=0)
            answer = await call.wait_for(lambda e: e["type"] == "m.call.answer")
            setups.append((answer["_seen_at"] - call.invite_sent_at) * 1000)
            await call.hang_up()
        await asyncio.sleep(0.5)
        inside = self.log_values("setup_ms")[before:]
        p50 = statistics.median(setups)
        print("\n1. Call set-up (invite sent -> answer seen by the caller)")
        print(
            f"   plain message round trip (!ping -> pong): p50 {statistics.median(rtts):.0f} ms,"
            f" p95 {pct(rtts, 0.95):.0f} ms  ({count} messages)"
        )
        print(
            f"   call set-up, end to end:                  p50 {p50:.0f} ms,"
            f" p95 {pct(setups, 0.95):.0f} ms  ({count} calls)"
        )
        if inside:
            print(
                f"   inside the bridge (invite handled -> answer sent): p50 "
                f"{statistics.median(inside):.1f} ms, p95 {pct(inside, 0.95):.1f} ms"
            )
        verdict = "meets" if p50 < SETUP_TARGET_MS else "MISSES"
        print(f"   target: p50 under {SETUP_TARGET_MS} ms -> {verdict}")

    # ----- 2. concurrent echo calls -----
    async def hold_calls(self, calls: list[CallPeer], seconds: float) -> list[tuple[float, float]]:
        """(loss %, rate %) per call over ``seconds`` of steady media."""
        await asyncio.gather(*(c.wait_connected(60) for c in calls))
        await asyncio.sleep(2.0)  # past the greeting and the jitter buffers' start
        first = await asyncio.gather(*(c.inbound() for c in calls))
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        last = await asyncio.gather(*(c.inbound() for c in calls))
        elapsed = time.perf_counter() - started
        out = []
        for (r0, l0), (r1, l1) in zip(first, last, strict=True):
            received, lost = r1 - r0, l1 - l0
            sent = received + lost
            loss = 100 * lost / sent if sent else 100.0
            rate = 100 * sent / (elapsed * PACKETS_PER_SECOND)
            out.append((loss, rate))
        return out

    async def concurrent(self, counts: list[int], hold: float) -> None:
        print("\n2. Concurrent echo calls (each held while measuring)")
        people = [await self.person_with_dm() for _ in range(max(counts))]
        best = 0
        for count in counts:
            calls = [CallPeer(user, room) for user, room in people[:count]]
            cpu0 = (cpu_seconds(self.bridge_pid), time.process_time())
            await asyncio.gather(*(c.place(invitee=self.bot) for c in calls))
            try:
                figures = await self.hold_calls(calls, hold)
            except TimeoutError as exc:
                print(f"   {count:3d} calls: did not all connect ({exc})")
                figures = None
            cpu1 = (cpu_seconds(self.bridge_pid), time.process_time())
            await asyncio.gather(*(c.hang_up() for c in calls))
            await asyncio.sleep(1.0)
            if figures is None:
                break
            worst_loss = max(f[0] for f in figures)
            worst_rate = min(f[1] for f in figures)
            ok = worst_loss < 1.0 and worst_rate >= 97.0
            best = count if ok else best
            bridge_cpu = cpu1[0] - cpu0[0]
            print(
                f"   {count:3d} calls: worst loss {worst_loss:.2f}%, worst rate {worst_rate:.1f}%"
                f"  (CPU s: bridge {bridge_cpu:.1f} = {per_call_second(bridge_cpu, count, hold)}"
                f" ms per call-second, callers {cpu1[1] - cpu0[1]:.1f})"
                f"  {'ok' if ok else 'over'}"
            )
            if not ok:
                break
        verdict = "meets" if best >= CONCURRENT_TARGET else "MISSES"
        print(f"   carried with < 1% loss: {best} calls; target {CONCURRENT_TARGET} -> {verdict}")

    # ----- 3. conference -----
    async def conference(self, sizes: list[int], hold: float) -> None:
        print("\n3. Conference (everyone hears everyone else, mixed by the bridge)")
        host = await self.person()
        room = await host.create_room([self.bot], name="Bench conference")
        await host.wait_joined(room, self.bot)
        people = [host]
        for _ in range(max(sizes) - 1):
            other = await self.person()
            await host.client.room_invite(room, other.user_id)
            await other.client.join(room)
            people.append(other)
        mark = host.mark(room)
        await host.send_text(room, "!call conference")
        ready = await host.wait_for_notice(room, self.bot, "Conference ready", start=mark)
        target = re.search(r"call (@\S+:localhost) to join", ready["content"]["body"])[1]
        best = 0
        for size in sizes:
            before = len(self.log_values("late_ticks"))
            calls = [CallPeer(p, room, tone_hz=300 + 50 * i) for i, p in enumerate(people[:size])]
            cpu0 = (cpu_seconds(self.bridge_pid), time.process_time())
            await asyncio.gather(*(c.place(invitee=target) for c in calls))
            try:
                figures = await self.hold_calls(calls, hold)
            except TimeoutError as exc:
                print(f"   {size:3d} people: did not all connect ({exc})")
                figures = None
            cpu1 = (cpu_seconds(self.bridge_pid), time.process_time())
            await asyncio.gather(*(c.hang_up() for c in calls))
            await asyncio.sleep(1.5)
            if figures is None:
                break
            late = self.log_values("late_ticks")[before:]
            lateness = self.log_values("max_lateness_ms")[before:]
            worst_loss = max(f[0] for f in figures)
            worst_rate = min(f[1] for f in figures)
            highest_rate = max(f[1] for f in figures)
            late_ticks = int(late[-1]) if late else -1
            ok = worst_loss < 1.0 and worst_rate >= 97.0 and highest_rate <= 103.0
            ok = ok and late_ticks == 0
            best = size if ok else best
            print(
                f"   {size:3d} people: worst loss {worst_loss:.2f}%,"
                f" rate {worst_rate:.1f}-{highest_rate:.1f}%,"
                f" mixer late ticks {late_ticks}, max lateness "
                f"{lateness[-1] if lateness else float('nan'):.1f} ms"
                f"  (CPU s: bridge {cpu1[0] - cpu0[0]:.1f}, callers {cpu1[1] - cpu0[1]:.1f})"
                f"  {'ok' if ok else 'over'}"
            )
            if not ok:
                break
        verdict = "meets" if best >= CONFERENCE_TARGET else "MISSES"
        print(
            f"   mixed in real time without drift: {best} people; target "
            f"{CONFERENCE_TARGET} -> {verdict}"
        )


async def run(args: argparse.Namespace) -> None:
    limit_gathering(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    stack = Stack(
        workdir,
        ["basics", "policy", "calls"],
        settings={
            "calls": {
                "ice_addresses": ["127.0.0.1"],
                "max_calls": 500,
                "max_calls_per_person": 500,  # capacity is measured, not the per-person cap
                "connect_timeout": 60,
            }
        },
        bridge_extra={"bridge": {"permissions": {"localhost": "user"}}},
    )
    await asyncio.to_thread(stack.start)
    print(f"Synapse and the bridge are up (work folder {workdir}); {os.cpu_count()} CPUs")
    bench = Bench(stack)
    try:
        await bench.setup_time(args.setups)
        await bench.concurrent(args.concurrent, args.hold)
        await bench.conference(args.conference, args.hold)
    finally:
        await bench.close()
        await asyncio.to_thread(stack.stop)
        if args.keep:
            print(f"kept {workdir} (bridge/bridge.log, synapse/synapse.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", type=int, default=30, help="calls for the set-up time")
    parser.add_argument(
        "--concurrent",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[5, 10, 15, 20, 25, 30],
        help="concurrent echo call counts to try, in order",
    )
    parser.add_argument(
        "--conference",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[3, 5, 8, 10, 12],
        help="conference sizes to try, in order",
    )
    parser.add_argument("--hold", type=float, default=5.0, help="seconds measured per step")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
