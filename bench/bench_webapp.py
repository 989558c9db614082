"""The drive's web app: 1 GiB uploaded through the page in Chromium (the "Choose files to
upload" button; files over 8 MiB go up as a resumable upload, in 32 MiB pieces four at a
time) against the same file PUT through the drive's HTTP API with curl (``curl -T``,
streamed).

Run: ``.venv/bin/python bench/bench_webapp.py [--size-mib 1024] [--rounds 1]`` (needs the
test extras for Synapse, Debian's ``chromium``, node, and the npm modules of
``tests/drive/webapp/package.json`` — ``scripts/test.sh`` installs them; uses about 3 ×
the size of free disk in a temporary folder: the rounds send the same bytes, which the
drive stores once). In one run, each round is
curl then the page (so the two alternate and share the machine's load of the moment);
with several rounds, medians and every round are printed. Target (issue 17): page time
≤ 1.25 × curl time, i.e. curl/page ≥ 0.8. A benchmark reports; exit 0 whatever the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_drive_common import PREFIX, drive_stack, temp_workdir  # noqa: E402

from tests.drive.webapp.modules import missing, run_scenario  # noqa: E402

TARGET = 0.8


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for i in range(size >> 20):
            out.write(block[i % 7 :] + block[: i % 7])  # no two MiB alike


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """User and system CPU time of this process's finished children (curl; node with
    Chromium, whose processes node waits for)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def curl_upload(url: str, token: str, path: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(path),
            "-H", f"Authorization: Bearer {token}",
            "-H", "Content-Type: application/octet-stream", url,
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.stdout.strip() not in ("200", "201"):
        raise RuntimeError(f"curl's upload failed: {done.stdout} {done.stderr}")
    return seconds


def report(mib: int, rounds: list[tuple[float, ...]]) -> None:
    curl, took, curl_cpu, curl_client, page_cpu, page_client, load = (
        statistics.median(column) for column in zip(*rounds, strict=True)
    )
    ratio = curl / took
    print(f"1 file of {mib} MiB uploaded, median of {len(rounds)} round(s) (load {load:.1f})")
    print(f"  curl -T (HTTP API PUT): {curl:7.2f} s ({mib / curl:7.1f} MiB/s)")
    print(f"  web app in Chromium   : {took:7.2f} s ({mib / took:7.1f} MiB/s)")
    print(f"  bridge CPU: {curl_cpu:.2f} s for curl's, {page_cpu:.2f} s for the page's")
    print(
        f"  client CPU: curl {curl_client:.2f} s; node and Chromium {page_client:.2f} s "
        "(from start to finish: signing in, the page, the upload)"
    )
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"  ratio curl/page       : {ratio:7.2f} ({verdict} the target >= {TARGET})")
    if len(rounds) > 1:
        for n, (c, p, c_cpu, _, p_cpu, p_client, at) in enumerate(rounds, 1):
            print(
                f"  round {n}: curl {c:6.2f} s, page {p:6.2f} s, ratio {c / p:5.2f}; bridge "
                f"CPU {c_cpu:.2f} s / {p_cpu:.2f} s; Chromium {p_client:.2f} s; load {at:.1f}"
            )


async def main(size_mib: int, rounds_wanted: int) -> None:
    if (reason := missing("playwright-core")) is not None:
        print(f"cannot run: {reason}")
        return
    workdir = temp_workdir("bench-webapp-")
    stack = drive_stack(workdir)
    try:
        await asyncio.to_thread(stack.start)
        user = await stack.user()
        import aiohttp

        headers = {"Authorization": f"Bearer {user.client.access_token}"}
        base = stack.bridge.url + PREFIX
        async with aiohttp.ClientSession() as http:
            folders = {}
            for name in ("ByCurl", "ByPage"):
                async with http.post(f"{base}/folders", json={"name": name}, headers=headers) as r:
                    folders[name] = (await r.json())["id"]
        big = workdir / "big.bin"
        make_file(big, size_mib << 20)
        bridge_pid = stack.bridge.proc.pid
        rounds = []
        for n in range(rounds_wanted):
            before, client_before = cpu_seconds(bridge_pid), children_cpu()
            curl = await asyncio.to_thread(
                curl_upload,
                f"{base}/folders/{folders['ByCurl']}/files/big-{n}.bin",
                user.client.access_token,
                big,
            )
            curl_cpu = (cpu_seconds(bridge_pid) - before, children_cpu() - client_before)
            sent = workdir / f"big-{n}.bin"  # a name of its own each round (same bytes)
            os.link(big, sent)
            before, client_before = cpu_seconds(bridge_pid), children_cpu()
            page = await asyncio.to_thread(
                run_scenario,
                "bench_upload.mjs",
                {
                    "url": stack.bridge.url,
                    "user": user.user_id.split(":")[0][1:],
                    "password": "correct horse",
                    "folder": "ByPage",
                    "file": str(sent),
                },
                7200,
            )
            page_cpu = (cpu_seconds(bridge_pid) - before, children_cpu() - client_before)
            if page["state"] != "done":
                print(f"the page's upload failed: {page['error']}")
                return
            rounds.append((curl, page["seconds"], *curl_cpu, *page_cpu, os.getloadavg()[0]))
        await user.close()
        report(size_mib, rounds)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.size_mib, max(1, args.rounds)))
