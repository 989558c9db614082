"""Dispatch before and after: the ingest benchmark's handled events/s for this tree and
for a baseline tree, in one run, against the same Synapse.

Run: ``.venv/bin/python bench/bench_dispatch_compare.py [--rounds 3] [--baseline REV]``
(needs the test extras for Synapse).

Issue 15 asks that the runtime's new shape (the EventRouter, the typed contract of
bridge/api.py, the life cycle, one namespace) does not slow dispatch down: handled
events/s after the change at least 0.95 x before. The default baseline is the last
commit before that work, the parent of "Plugin contract v1 (issue 15), first part"
(b84f44b).

How the two trees run side by side, from one virtualenv:

* this tree: ``python -m anywhere run``, started by ``anywhere.bridge.testing.stack.Stack``
  as ``bench_ingest.py`` starts it (a fresh config's plugins, SQLite inbox, logging at
  WARNING);
* the baseline: ``git archive REV`` unpacked into a temporary folder (no worktree, no
  change to the repository; removed at the end), run as ``python -m bridge run`` from
  that folder with the folder first on ``PYTHONPATH``. There ``import bridge`` finds the
  baseline's own folder, so the legacy-names finder (anywhere._legacy_names) steps aside
  (it answers an old name only when nobody else finds it, or finds this checkout's
  folder); the run checks this before measuring. The plugins come from entry points,
  and the installed ones name ``anywhere.plugins...`` (this tree's code), so the folder
  also gets a ``anywhere_bridge-<version>.dist-info`` with the baseline's own
  ``anywhere.plugins`` entry points from its pyproject.toml, found before the installed
  distribution. Its config is this tree's with its own port and data folder, minus the
  top-level sections the baseline does not know (``encryption``). Both bridges share the
  tokens, the bot and the Synapse; the homeserver's registration points to this tree's
  bridge, which answers the baseline's start-up ping for it.

The load is bench_ingest.py's (its ``measure``: transactions of 100 ``m.room.message``
events, one in flight, warm-up handled before the clock starts, handled when
``anywhere_events_handled_total`` counts them all). Rounds alternate: this tree, then
the baseline, ``--rounds`` times, so that the machine's load swings fall on both. Printed:
each round, the medians, their ratio (after / before) against the target 0.95, the
per-round ratios, and the bridge processes' CPU per event (steadier on a busy machine).

A benchmark reports; exit 0 whatever the figures (1 if it could not run, 130 if
interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import (  # noqa: E402
    Interrupted,
    ProfileRecorder,
    add_load_options,
    enabled_plugins,
    free_port,
    interrupt_on_sigterm,
    make_work_folder,
    measure,
    remove_work_folder,
)
from ingest_report import Figures, cpu_busy, filesystem_of  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The parent of "Plugin contract v1 (issue 15), first part": the last commit before the
# issue-15 runtime work (router, bridge/api.py, contract, life cycle, namespace).
DEFAULT_BASELINE = "b84f44b^"
TARGET_RATIO = 0.95
ENTRY_POINT_GROUP = "anywhere.plugins"


# --------------------------------------------------------------------------- the baseline


class BaselineTree:
    """``git archive REV`` unpacked in a temporary folder, runnable beside this tree."""

    def __init__(self, rev: str, parent: Path) -> None:
        self.commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
        self.subject = git("log", "-1", "--format=%h %s", self.commit)
        self.path = Path(tempfile.mkdtemp(prefix="baseline-", dir=parent))

    def unpack(self) -> None:
        archive = subprocess.Popen(
            ["git", "-C", str(REPO), "archive", self.commit], stdout=subprocess.PIPE
        )
        subprocess.run(["tar", "-x", "-C", str(self.path)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {self.commit} failed")
        self.write_entry_points()

    def write_entry_points(self) -> None:
        """A dist-info with the baseline's own plugin entry points, first on sys.path,
        so its PluginManager loads ``plugins.basics`` (its folder), not the installed
        ``anywhere.plugins.basics``."""
        project = tomllib.loads((self.path / "pyproject.toml").read_text("utf-8"))["project"]
        points = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
        if not points:
            raise RuntimeError(f"the baseline declares no {ENTRY_POINT_GROUP!r} entry points")
        name = project["name"].replace("-", "_")
        info = self.path / f"{name}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    @property
    def env(self) -> dict[str, str]:
        extra = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": str(self.path) + (os.pathsep + extra if extra else "")}

    def check_imports(self, plugins: list[str]) -> str:
        """Import the baseline's bridge and its enabled plugins as its process will, and
        fail unless every module comes from the baseline's folder."""
        probe = (
            "import importlib, sys\n"
            "from importlib.metadata import entry_points\n"
            "import bridge.runtime\n"
            "eps = {e.name: e for e in entry_points(group=sys.argv[1])}\n"
            "files = [bridge.runtime.__file__]\n"
            "for name in sys.argv[2:]:\n"
            "    files.append(importlib.import_module(eps[name].module).__file__)\n"
            "print(*files, sep='\\n')\n"
            "print('aliased' if 'anywhere.bridge' in sys.modules else 'own')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe, ENTRY_POINT_GROUP, *plugins],
            cwd=self.path,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the baseline does not import:\n{out.stderr[-2000:]}")
        *files, kind = out.stdout.split()
        foreign = [f for f in files if not Path(f).resolve().is_relative_to(self.path.resolve())]
        if foreign or kind != "own":
            raise RuntimeError(f"the baseline would run this tree's code: {foreign or kind}")
        return ", ".join(str(Path(f).relative_to(self.path)) for f in files)

    def config(self, current: dict, folder: Path) -> Path:
        """This tree's bridge config for the baseline: own port and data folder, without
        the top-level sections the baseline's example config does not have."""
        known = yaml.safe_load((self.path / "config.example.yaml").read_text("utf-8"))
        config = {key: value for key, value in current.items() if key in known}
        port = free_port()
        config["appservice"] = {
            **current["appservice"],
            "port": port,
            "address": f"http://127.0.0.1:{port}",
        }
        config["data_dir"] = str(folder / "data")
        folder.mkdir(parents=True)
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- rounds


def profile_path(args: argparse.Namespace, name: str) -> Path:
    return args.profile.with_name(f"{args.profile.stem}-{name}{args.profile.suffix}")


async def run_rounds(args: argparse.Namespace, bridges: dict) -> dict[str, list[Figures]]:
    """``bridges``: name -> BridgeProcess, measured in this order in every round."""
    results: dict[str, list[Figures]] = {name: [] for name in bridges}
    for r in range(args.rounds):
        for name, bridge in bridges.items():
            profile = None
            if args.profile and r == 0:
                profile = ProfileRecorder(bridge.proc.pid, profile_path(args, name))
            figures = await measure(
                name,
                bridge.url,
                args.hs_token,
                args,
                r,
                pid=bridge.proc.pid,
                ops_token=bridge.ops_token,
                profile=profile,
            )
            results[name].append(figures)
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {f[-1].handled_per_second:,.0f}" for n, f in results.items())
            + " handled ev/s",
            flush=True,
        )
    return results


def cpu_per_event_us(figures: Figures, per_txn: int) -> float | None:
    if not figures.server_cpu:
        return None
    return 1e6 * sum(figures.server_cpu) / per_txn


def report(results: dict[str, list[Figures]], args: argparse.Namespace, notes: str) -> None:
    after, before = results["current"], results["baseline"]
    rate = {n: statistics.median(f.handled_per_second for f in r) for n, r in results.items()}
    ratio = rate["current"] / rate["baseline"]
    paired = [
        a.handled_per_second / b.handled_per_second for a, b in zip(after, before, strict=True)
    ]
    print()
    print(
        f"Dispatch before/after: {args.transactions} transactions x {args.events} "
        f"m.room.message events per round and tree, one in flight, after {args.warmup} "
        f"warm-up transactions; {args.rounds} alternating rounds (current, baseline)"
    )
    print(notes)
    print()
    cpu: dict[str, float] = {}
    for name in ("current", "baseline"):
        samples = [c for c in (cpu_per_event_us(f, args.events) for f in results[name]) if c]
        if samples:
            cpu[name] = statistics.median(samples)
        print(
            f"  {name:8} handled events/s: median {rate[name]:,.0f} (rounds: "
            + ", ".join(f"{f.handled_per_second:,.0f}" for f in results[name])
            + ")"
            + (f"; bridge CPU per event, median {cpu[name]:.1f} µs" if name in cpu else "")
        )
    print(
        "  ratio after/before per round: "
        + ", ".join(f"{p:.3f}" for p in paired)
        + f" (median {statistics.median(paired):.3f})"
    )
    if len(cpu) == 2:
        print(
            f"  bridge CPU per event after/before: {cpu['current'] / cpu['baseline']:.3f} "
            "(until all handled, user + system; above 1 is slower)"
        )
    print()
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio after/before (medians): {ratio:.3f}   target >= {TARGET_RATIO}   {verdict}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="REV",
        help=f"the tree before (default {DEFAULT_BASELINE}: the last commit before the "
        "issue-15 runtime work)",
    )
    add_load_options(parser, rounds=3)
    parser.add_argument(
        "--without-encryption",
        action="store_true",
        help="run this tree with encryption.pickle_key empty (encryption off, as the "
        "baseline has none): the runtime's dispatch alone, without issue 16's decrypting "
        "layer in front of it",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record both bridges with py-spy during the first round, into NAME-current.EXT "
        "and NAME-baseline.EXT (.txt collapsed stacks, .svg flamegraph, .json speedscope); "
        "sampling slows them, take the figures from a run without it",
    )
    args = parser.parse_args(argv)

    # Imported here so --help works without the test extras.
    from anywhere.bridge.testing.stack import BridgeProcess, Stack

    plugins = enabled_plugins(args.plugins)
    interrupt_on_sigterm()
    busy_before = cpu_busy()
    base = make_work_folder(args, "anywhere-bench-dispatch-")
    stack = tree = baseline = None
    try:
        tree = BaselineTree(args.baseline, base)
        print(f"baseline {tree.subject[:100]}", flush=True)
        tree.unpack()
        print(f"baseline imports its own {tree.check_imports(plugins)}", flush=True)
        print(f"work folder {base} ({filesystem_of(base)}); starting Synapse and both bridges")
        extra: dict = {"logging": {"level": "WARNING"}}
        if args.without_encryption:
            extra["encryption"] = {"pickle_key": ""}
        stack = Stack(base / "stack", enabled=plugins, bridge_extra=extra)
        stack.start()
        baseline = BridgeProcess(
            tree.config(stack.config, base / "baseline"),
            tree.env,
            module="bridge",
            cwd=tree.path,
        )
        baseline.start()
        args.hs_token = stack.config["appservice"]["hs_token"]
        results = asyncio.run(run_rounds(args, {"current": stack.bridge, "baseline": baseline}))
        head = git("log", "-1", "--format=%h", "HEAD")
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
        notes = (
            f"  current: {head}{dirty} (python -m anywhere run, encryption "
            f"{'off' if args.without_encryption else 'on'}); baseline: {tree.subject[:80]} "
            "(python -m bridge run)\n"
            f"  plugins {'+'.join(['core', *plugins])}, logging WARNING, SQLite inbox on "
            f"{filesystem_of(base)}; {os.cpu_count()} CPUs shared with the load generator"
        )
        if busy_before is not None:
            notes += f"; CPUs busy just before the run: {100 * busy_before:.0f}%"
            if busy_before > 0.15:
                notes += " (other work was running: figures are noisy)"
        report(results, args, notes)
        if args.profile:
            print(
                "\npy-spy profiles of the first round: "
                + ", ".join(str(profile_path(args, name)) for name in results)
            )
        return 0
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for name, bridge in (("current", stack and stack.bridge), ("baseline", baseline)):
            if bridge is not None:
                print(f"end of the {name} bridge's log:\n{bridge.tail(30)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in (baseline, stack and stack.bridge, stack and stack.synapse):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        if tree is not None:
            tree.remove()
        remove_work_folder(args, base)


if __name__ == "__main__":
    sys.exit(main())
