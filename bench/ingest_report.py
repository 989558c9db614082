"""What bench_ingest.py measured, and its report: figures per server and round, the
targets, and what the machine was doing."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_EVENTS_PER_SECOND = 5_000
TARGET_RATIO = 0.5


@dataclass
class Figures:
    name: str
    events: int
    ack_seconds: float
    handled_seconds: float | None = None
    txn_latencies: list[float] | None = None
    store_seconds: float | None = None  # mean time in the bridge's handler, per transaction
    # CPU time per transaction (seconds) of the server process, user and system, until
    # everything was acknowledged (ceiling) or handled (bridge); and of the load generator
    server_cpu: tuple[float, float] | None = None
    client_cpu: float | None = None

    @property
    def acked_per_second(self) -> float:
        return self.events / self.ack_seconds

    @property
    def handled_per_second(self) -> float | None:
        return self.events / self.handled_seconds if self.handled_seconds else None

    def latency_ms(self, q: float) -> float:
        values = sorted(self.txn_latencies or [0.0])
        return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def filesystem_of(path: Path) -> str:
    """The mount type holding ``path`` (the cost of SQLite's fsync depends on it)."""
    best, kind = "", "?"
    target = path.resolve()
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and target.is_relative_to(parts[1]) and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def cpu_busy(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over ``seconds`` (other work moves the figures); None
    where /proc/stat is missing."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total1, idle1 = sample()
        time.sleep(seconds)
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle2 - idle1) / max(1, total2 - total1)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def median_figures(rounds: list[Figures]) -> Figures:
    """The round with the median acknowledged rate."""
    ordered = sorted(rounds, key=lambda f: f.acked_per_second)
    return ordered[len(ordered) // 2]


def report(
    bridge: Figures,
    ceiling: Figures,
    floor: Figures,
    args: argparse.Namespace,
    notes: str,
    all_rounds: dict[str, list[Figures]],
) -> None:
    ratio = bridge.acked_per_second / ceiling.acked_per_second
    handled = bridge.handled_per_second or 0.0
    handled_ratio = handled / ceiling.acked_per_second
    print()
    print(
        f"Transaction ingest: {args.transactions} transactions x {args.events} "
        f"m.room.message events, one in flight, after {args.warmup} warm-up transactions"
        + (f"; median of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    print(notes)
    print()
    rows = [
        ("figure", "events/s", "ceiling ev/s", "ratio", "target", "result"),
        (
            "bridge, acknowledged (200 sent)",
            f"{bridge.acked_per_second:,.0f}",
            f"{ceiling.acked_per_second:,.0f}",
            f"{ratio:.2f}",
            f">= {TARGET_EVENTS_PER_SECOND:,} ev/s",
            verdict(bridge.acked_per_second >= TARGET_EVENTS_PER_SECOND),
        ),
        ("", "", "", "", f"ratio >= {TARGET_RATIO}", verdict(ratio >= TARGET_RATIO)),
        (
            "bridge, handled (plugins ran)",
            f"{handled:,.0f}",
            f"{ceiling.acked_per_second:,.0f}",
            f"{handled_ratio:.2f}",
            f">= {TARGET_EVENTS_PER_SECOND:,} ev/s",
            verdict(handled >= TARGET_EVENTS_PER_SECOND),
        ),
        ("", "", "", "", f"ratio >= {TARGET_RATIO}", verdict(handled_ratio >= TARGET_RATIO)),
        (
            "durable floor (+ one fsync'd insert)",
            f"{floor.acked_per_second:,.0f}",
            f"{ceiling.acked_per_second:,.0f}",
            f"{floor.acked_per_second / ceiling.acked_per_second:.2f}",
            "(reference)",
            "",
        ),
        ("ceiling (bare aiohttp, parse + 200)", f"{ceiling.acked_per_second:,.0f}", "", "", "", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  "
            + "  ".join(
                cell.ljust(w) if j in (0, 4, 5) else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()
    for fig in (bridge, floor, ceiling):
        print(
            f"  {fig.name:8} per transaction: p50 {fig.latency_ms(0.5):.2f} ms, "
            f"p90 {fig.latency_ms(0.9):.2f} ms, p99 {fig.latency_ms(0.99):.2f} ms; "
            f"{args.transactions} transactions in {fig.ack_seconds:.2f} s"
        )
    for fig, until in (
        (bridge, "all handled"),
        (floor, "all acknowledged"),
        (ceiling, "all acknowledged"),
    ):
        if fig.server_cpu and fig.client_cpu is not None:
            user, system = fig.server_cpu
            print(
                f"  {fig.name:8} CPU per transaction: server {1000 * (user + system):.2f} ms "
                f"(user {1000 * user:.2f}, system {1000 * system:.2f}; until {until}), "
                f"load generator {1000 * fig.client_cpu:.2f} ms"
            )
    if bridge.store_seconds is not None:
        print(
            f"  bridge   mean time inside its transaction handler (parse + durable store, "
            f"anywhere_transaction_seconds): {1000 * bridge.store_seconds:.2f} ms"
        )
    if bridge.handled_seconds:
        print(
            f"  bridge   all {bridge.events:,} events handled {bridge.handled_seconds:.2f} s "
            "after the first transaction was sent"
        )
    if args.rounds > 1:
        for name, rounds in all_rounds.items():
            rates = ", ".join(f"{f.acked_per_second:,.0f}" for f in rounds)
            print(f"  {name:8} acknowledged events/s per round: {rates}")
        handled_rates = [f.handled_per_second or 0 for f in all_rounds["bridge"]]
        print(
            "  bridge   handled events/s per round: "
            + ", ".join(f"{r:,.0f}" for r in handled_rates)
            + f" (median {statistics.median(handled_rates):,.0f})"
        )
        for name in ("bridge", "floor"):
            ratios = [
                b.acked_per_second / c.acked_per_second
                for b, c in zip(all_rounds[name], all_rounds["ceiling"], strict=True)
            ]
            print(
                f"  {name:8} ratio per round (same round's ceiling): "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f" (median {statistics.median(ratios):.2f})"
            )
    print(
        f"  bridge / durable floor: {bridge.acked_per_second / floor.acked_per_second:.2f} "
        "(what the bridge keeps of the most any receiver can acknowledge here with one "
        "fsync per transaction)"
    )
    ok = bridge.acked_per_second >= TARGET_EVENTS_PER_SECOND and ratio >= TARGET_RATIO
    print()
    print(f"Overall (acknowledged figure against both targets): {verdict(ok)}")
