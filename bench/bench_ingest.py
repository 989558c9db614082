"""Transaction ingest: events/s through the appservice endpoint, against a bare ceiling.

Run: ``.venv/bin/python bench/bench_ingest.py [--transactions 1000] [--rounds 3]``.

The load is what Synapse sends a busy bridge: transactions of 100 ``m.room.message``
events from ordinary people (no commands in them), pushed with ``PUT
/_matrix/app/v1/transactions/{txn_id}`` and the hs_token, one transaction in flight at a
time (Synapse never has two transactions to one appservice in flight).

Three servers get the same load in the same run, one after the other in every round:

* the real bridge, ``python -m anywhere run`` as its own process, with the built-in
  plugins a fresh config enables (``core`` plus ``plugins.enabled`` of
  ``bridge/config.example.yaml``, today ``basics`` and ``policy``; ``--plugins`` to
  choose), the durable inbox on SQLite (WAL, ``synchronous=FULL``) and logging at
  WARNING; it starts against a real Synapse in a temporary folder because it waits for
  its homeserver at start-up;
* the ceiling: a bare aiohttp process with the same route that only parses the JSON body
  and answers 200 ``{}`` (``ingest_reference.py ... parse``);
* the durable floor: the ceiling plus one fsync'd SQLite insert of the body before the
  200, and nothing else — no plugins, no handling (``ingest_reference.py ... store``):
  the most any receiver that stores before acknowledging gets from this machine's disk.

Reported: acknowledged events/s for each (events whose transaction got its 200, divided
by the time to send them) and the ratios to the ceiling; for the bridge also handled
events/s (until ``anywhere_events_handled_total`` on ``/metrics`` shows every event
handed to the plugins); CPU time per transaction of each server process (user and
system, from /proc) and of the load generator. Targets (issue): at least 5,000
events/s, and at least half the ceiling.

A benchmark reports; it is not a test: the exit code is 0 whatever the figures (1 only if
the benchmark itself could not run). ``--profile out.svg`` records the bridge process
with py-spy during the measured transactions (``.venv/bin/pip install py-spy``; ``.txt``
gives collapsed stacks, ``.json`` speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from ingest_report import Figures, cpu_busy, filesystem_of, median_figures, report

TXN_PATH = "/_matrix/app/v1/transactions/{}"
HANDLED_METRIC = "anywhere_events_handled_total"
RECEIVED_METRIC = "anywhere_events_received_total"
# Time the bridge spends in its transaction handler (parse, validate, store durably).
STORE_SUM, STORE_COUNT = "anywhere_transaction_seconds_sum", "anywhere_transaction_seconds_count"
METRICS = (HANDLED_METRIC, RECEIVED_METRIC, STORE_SUM, STORE_COUNT)
ROOMS = 10
PEOPLE = ("alice", "bob", "carol", "dave", "erin")

# The ceiling and the durable floor (see ingest_reference.py).
REFERENCE_SERVER = Path(__file__).with_name("ingest_reference.py")


class Interrupted(Exception):
    """SIGTERM, turned into an exception so the clean-up below runs."""


# --------------------------------------------------------------------------- the load


def make_bodies(prefix: str, count: int, events_per_txn: int) -> list[tuple[str, bytes]]:
    """``count`` transactions (id, JSON body), serialised beforehand so that the load
    generator spends its time sending, not encoding."""
    now = int(time.time() * 1000)
    bodies = []
    n = 0
    for t in range(count):
        events = []
        for _ in range(events_per_txn):
            n += 1
            events.append(
                {
                    "type": "m.room.message",
                    "room_id": f"!room{n % ROOMS}bench:localhost",
                    "sender": f"@{PEOPLE[n % len(PEOPLE)]}:localhost",
                    "event_id": f"${prefix}-{n}-{os.getpid()}benchbenchbenchbenchbench",
                    "origin_server_ts": now + n,
                    "content": {"msgtype": "m.text", "body": f"just chatting {n}"},
                    "unsigned": {"age": 50 + n % 200},
                }
            )
        bodies.append((f"{prefix}-{t}", json.dumps({"events": events}).encode()))
    return bodies


async def push(
    session: aiohttp.ClientSession, base_url: str, token: str, bodies: list[tuple[str, bytes]]
) -> list[float]:
    """Send the transactions one after the other; the latency of each."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies = []
    for txn_id, body in bodies:
        started = time.perf_counter()
        async with session.put(
            base_url + TXN_PATH.format(txn_id), data=body, headers=headers
        ) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"transaction {txn_id}: HTTP {resp.status}: {answer[:300]!r}")
        latencies.append(time.perf_counter() - started)
    return latencies


def process_cpu(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds a process (all its threads) has used; None where
    /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def metric_sum(exposition: str, name: str) -> float:
    """Sum of every sample named ``name`` in a Prometheus text exposition page
    (``name value`` or ``name{label="..."} value``; comments skipped)."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if rest.startswith("{"):
            rest = rest[rest.rindex("}") + 1 :]
        elif not rest.startswith(" "):
            continue  # another metric whose name starts with this one
        total += float(rest.split()[0])
    return total


async def read_metrics(
    session: aiohttp.ClientSession, base_url: str, ops_token: str
) -> dict[str, float]:
    """The bridge's counters this benchmark uses, from ``/metrics``."""
    async with session.get(
        base_url + "/metrics", headers={"Authorization": f"Bearer {ops_token}"}
    ) as resp:
        resp.raise_for_status()
        text = await resp.text()
    return {name: metric_sum(text, name) for name in METRICS}


async def wait_handled(
    session: aiohttp.ClientSession,
    base_url: str,
    ops_token: str,
    goal: float,
    timeout: float,
    interval: float = 0.02,
) -> float:
    """Poll ``/metrics`` until ``goal`` events were handled; returns the
    ``perf_counter`` time of the first poll that saw it."""
    deadline = time.monotonic() + timeout
    while True:
        seen = (await read_metrics(session, base_url, ops_token))[HANDLED_METRIC]
        if seen >= goal:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen:.0f} of {goal:.0f} events handled after {timeout} s")
        await asyncio.sleep(interval)


async def measure(
    name: str,
    base_url: str,
    token: str,
    args: argparse.Namespace,
    round_no: int,
    pid: int,
    ops_token: str | None = None,
    profile: ProfileRecorder | None = None,
) -> Figures:
    warm = make_bodies(f"{name}-r{round_no}-warm", args.warmup, args.events)
    load = make_bodies(f"{name}-r{round_no}-load", args.transactions, args.events)
    events = args.transactions * args.events
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        await push(session, base_url, token, warm)
        baseline = 0.0
        if ops_token:
            # Start clean: everything received so far (the warm-up) is handled before the
            # clock starts.
            received = (await read_metrics(session, base_url, ops_token))[RECEIVED_METRIC]
            await wait_handled(session, base_url, ops_token, received, args.timeout)
            before = await read_metrics(session, base_url, ops_token)
            baseline = before[HANDLED_METRIC]
        if profile:
            profile.start()
        cpu_before, client_before = process_cpu(pid), time.process_time()
        started = time.perf_counter()
        latencies = await push(session, base_url, token, load)
        acked = time.perf_counter()
        client_cpu = (time.process_time() - client_before) / args.transactions
        handled = store_seconds = None
        if ops_token:
            done = await wait_handled(session, base_url, ops_token, baseline + events, args.timeout)
            handled = done - started
            after = await read_metrics(session, base_url, ops_token)
            count = after[STORE_COUNT] - before[STORE_COUNT]
            store_seconds = (after[STORE_SUM] - before[STORE_SUM]) / count if count else None
        cpu_after = process_cpu(pid)
        if profile:
            profile.stop()
    server_cpu = None
    if cpu_before and cpu_after:
        server_cpu = (
            (cpu_after[0] - cpu_before[0]) / args.transactions,
            (cpu_after[1] - cpu_before[1]) / args.transactions,
        )
    return Figures(
        name, events, acked - started, handled, latencies, store_seconds, server_cpu, client_cpu
    )


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReferenceProcess:
    """The ceiling (``mode="parse"``) or the durable floor (``mode="store"``, its
    database at ``db_path``): see REFERENCE_SERVER."""

    def __init__(
        self, mode: str = "parse", db_path: Path | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.mode, self.db_path, self.extra = mode, db_path, extra
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REFERENCE_SERVER), str(self.port), self.mode]
            + ([str(self.db_path)] if self.db_path else [])
            + list(self.extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        line = self.proc.stdout.readline()  # "ready", or the traceback's first line
        if b"ready" not in line:
            raise RuntimeError(f"the {self.mode} reference server did not start: {line!r}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class ProfileRecorder:
    """py-spy on the bridge process for the measured part only."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.proc: subprocess.Popen | None = None
        exe = Path(sys.executable).with_name("py-spy")
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")
        if not self.exe:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")

    def start(self) -> None:
        fmt = {".txt": "raw", ".json": "speedscope"}.get(self.out.suffix, "flamegraph")
        self.proc = subprocess.Popen(
            [
                self.exe,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "250",
                "--format",
                fmt,
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        time.sleep(1.0)  # py-spy attaches before the load starts
        if self.proc.poll() is not None:
            raise RuntimeError(f"py-spy failed: {self.proc.stderr.read().decode()[-500:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- main


def enabled_plugins(option: str | None) -> list[str]:
    """``--plugins``: comma-separated names, or by default the plugins a fresh config
    enables (``plugins.enabled`` of bridge/config.example.yaml)."""
    if option is not None:
        return [name.strip() for name in option.split(",") if name.strip()]
    from anywhere.bridge.config import example_defaults  # the test extras, not for --help

    return list(example_defaults()["plugins"]["enabled"])


def interrupt_on_sigterm() -> None:
    """SIGTERM raises :class:`Interrupted`, so that a benchmark's clean-up runs."""

    def on_sigterm(*_: object) -> None:
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_sigterm)


async def run_rounds(
    args: argparse.Namespace,
    stack,
    references: dict[str, ReferenceProcess],
    profile: ProfileRecorder | None,
) -> dict[str, list[Figures]]:
    hs_token = stack.config["appservice"]["hs_token"]
    results: dict[str, list[Figures]] = {"bridge": [], **{name: [] for name in references}}
    for r in range(args.rounds):
        for name, server in references.items():
            results[name].append(
                await measure(name, server.url, hs_token, args, r, pid=server.proc.pid)
            )
        results["bridge"].append(
            await measure(
                "bridge",
                stack.bridge.url,
                hs_token,
                args,
                r,
                pid=stack.bridge.proc.pid,
                ops_token=stack.bridge.ops_token,
                profile=profile if r == 0 else None,
            )
        )
        print(
            f"round {r + 1}/{args.rounds}: bridge "
            f"{results['bridge'][-1].acked_per_second:,.0f} acked ev/s, "
            f"{results['bridge'][-1].handled_per_second or 0:,.0f} handled ev/s; floor "
            f"{results['floor'][-1].acked_per_second:,.0f} ev/s; ceiling "
            f"{results['ceiling'][-1].acked_per_second:,.0f} ev/s",
            flush=True,
        )
    return results


def add_load_options(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options of the load and its work folder, shared with bench_dispatch_compare.py."""
    parser.add_argument(
        "--transactions",
        type=int,
        default=1000,
        help="measured transactions per server (default 1000: a sustained load, past the "
        "200 transactions the bridge acknowledges ahead of handling; 300 measures a burst)",
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="warm-up transactions per server (default 20)"
    )
    parser.add_argument(
        "--events", type=int, default=100, help="events per transaction (default 100)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=rounds,
        help=f"measure each server this many times, report the median (default {rounds})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the bridge to handle everything",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for Synapse and the bridge (default: a temporary one, "
        "removed afterwards); the SQLite inbox lives here, so its disk counts",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--plugins",
        default=None,
        help="comma-separated plugins to enable (default: the ones a fresh config from "
        "`anywhere init` enables, i.e. plugins.enabled of bridge/config.example.yaml)",
    )


def make_work_folder(args: argparse.Namespace, prefix: str) -> Path:
    base = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    base.mkdir(parents=True, exist_ok=True)
    return base


def remove_work_folder(args: argparse.Namespace, base: Path) -> None:
    """Unless --keep or --workdir asked to keep it."""
    if args.keep or args.workdir:
        print(f"work folder kept: {base}", file=sys.stderr)
    else:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_options(parser, rounds=1)
    parser.add_argument(
        "--floor-handling",
        type=float,
        default=None,
        metavar="MICROSECONDS",
        help="run a handling process beside the durable floor that spends this much CPU "
        "per event (the bridge's plugins take about 2.5): the floor then shows the best a "
        "bridge split into a receiving and a handling process could do here",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the bridge with py-spy during the first measured round "
        "(.svg flamegraph, .txt collapsed stacks, .json speedscope)",
    )
    args = parser.parse_args(argv)

    # Imported here so --help works without the test extras.
    from anywhere.bridge.testing.stack import Stack

    plugins = enabled_plugins(args.plugins)
    interrupt_on_sigterm()
    busy_before = cpu_busy()
    base = make_work_folder(args, "anywhere-bench-ingest-")
    stack = profile = None
    references: dict[str, ReferenceProcess] = {}
    helpers: list[ReferenceProcess] = []
    try:
        print(
            f"work folder {base} ({filesystem_of(base)}); starting Synapse, the bridge and "
            "the two reference servers ...",
            flush=True,
        )
        stack = Stack(
            base / "stack", enabled=plugins, bridge_extra={"logging": {"level": "WARNING"}}
        )
        stack.start()
        references["ceiling"] = ReferenceProcess("parse")
        references["floor"] = ReferenceProcess("store", base / "floor.db")
        for server in references.values():
            server.start()
        if args.floor_handling is not None:  # after the floor made its table
            helpers.append(
                ReferenceProcess("handle", base / "floor.db", (str(args.floor_handling),))
            )
            helpers[-1].start()
        profile = ProfileRecorder(stack.bridge.proc.pid, args.profile) if args.profile else None
        results = asyncio.run(run_rounds(args, stack, references, profile))
        notes = (
            f"  bridge: python -m anywhere run, plugins {'+'.join(['core', *plugins])}, "
            "logging WARNING; SQLite "
            f"inbox on {filesystem_of(base)} (WAL, synchronous=FULL)\n"
            f"  {os.cpu_count()} CPUs shared by the load generator and the server"
        )
        if args.floor_handling is not None:
            notes += (
                f"\n  floor: with a separate handling process spending {args.floor_handling} µs "
                "of CPU per event beside it (a two-process bridge's best case)"
            )
        if busy_before is not None:
            notes += f"; CPUs busy just before the run: {100 * busy_before:.0f}%"
            if busy_before > 0.15:
                notes += " (other work was running: figures are noisy"
                notes += "; try --rounds 5)" if args.rounds < 3 else ")"
        report(
            median_figures(results["bridge"]),
            median_figures(results["ceiling"]),
            median_figures(results["floor"]),
            args,
            notes,
            results,
        )
        if args.profile:
            print(f"\npy-spy profile of the bridge: {args.profile}")
        return 0
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if stack is not None:
            print(f"end of the bridge log:\n{stack.bridge.tail(30)}", file=sys.stderr)
        return 1
    finally:
        # Ctrl-C here again must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if profile is not None:
            profile.stop()
        for server in [*references.values(), *helpers]:
            server.stop()
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.bridge.stop()
            with contextlib.suppress(Exception):
                stack.synapse.stop()
        remove_work_folder(args, base)


if __name__ == "__main__":
    sys.exit(main())
