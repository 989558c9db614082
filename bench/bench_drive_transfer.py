"""Drive transfers: a 1 GiB upload and download through the drive's HTTP API, against
the same file through Synapse's media repository, with the bridge's memory watched.

Run: ``.venv/bin/python bench/bench_drive_transfer.py [--size-mib 1024] [--rounds 1]``
(needs the test extras for Synapse; uses about 4 × the size of free disk in a
temporary folder).

In one run on the same machine, against a real Synapse and the bridge (drive on
``osfs://``), with one logged-in person's access token:

* drive upload: ``PUT /_anywhere/drive/v1/folders/{id}/files/big.bin``, the body streamed
  from a file in 1 MiB chunks; Synapse upload: ``POST /_matrix/media/v3/upload``, same body;
* drive download: ``GET`` of that file; Synapse download: the authenticated
  ``GET /_matrix/client/v1/media/download/{server}/{media_id}``; both read to the end
  and dropped.

The bridge's resident memory (VmRSS from /proc) is sampled every 20 ms during the drive
transfers. Targets (issue 3): drive time ≤ Synapse time in both directions (ratio
Synapse/drive ≥ 1.0), and the bridge's peak memory growing by < 64 MiB. A benchmark
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

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drive_common import PREFIX, drive_stack, temp_workdir  # noqa: E402

CHUNK = 1 << 20
MEMORY_LIMIT_MIB = 64


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class MemoryWatch:
    """Peak RSS of a process while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.baseline, self.peak = pid, rss_kib(pid), 0
        self._task: asyncio.Task | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kib(self.pid))
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> MemoryWatch:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024


async def file_chunks(path: Path):
    with open(path, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def read_all(resp: aiohttp.ClientResponse) -> int:
    total = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        total += len(chunk)
    return total


async def measure(stack, token: str, source: Path, rounds: int) -> dict[str, list[float]]:
    auth = {"Authorization": f"Bearer {token}"}
    size = source.stat().st_size
    times: dict[str, list[float]] = {k: [] for k in ("drive_up", "drive_down", "hs_up", "hs_down")}
    memory: list[float] = []
    pid = stack.bridge.proc.pid
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(
            f"{stack.bridge.url}{PREFIX}/folders", json={"name": "Bench"}, headers=auth
        ) as resp:
            folder = (await resp.json())["id"]
        for n in range(rounds):
            url = f"{stack.bridge.url}{PREFIX}/folders/{folder}/files/big{n}.bin"
            headers = {**auth, "Content-Length": str(size)}
            async with MemoryWatch(pid) as watch:
                started = time.perf_counter()
                async with http.put(url, data=file_chunks(source), headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                times["drive_up"].append(time.perf_counter() - started)
                started = time.perf_counter()
                async with http.get(url, headers=auth) as resp:
                    assert resp.status == 200 and await read_all(resp) == size
                times["drive_down"].append(time.perf_counter() - started)
            memory.append(watch.growth_mib)

            started = time.perf_counter()
            async with http.post(
                f"{stack.synapse.url}/_matrix/media/v3/upload?filename=big{n}.bin",
                data=file_chunks(source),
                headers={**headers, "Content-Type": "application/octet-stream"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                mxc = (await resp.json())["content_uri"]
            times["hs_up"].append(time.perf_counter() - started)
            server, media_id = mxc.removeprefix("mxc://").split("/")
            started = time.perf_counter()
            async with http.get(
                f"{stack.synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}",
                headers=auth,
            ) as resp:
                assert resp.status == 200 and await read_all(resp) == size
            times["hs_down"].append(time.perf_counter() - started)
    times["memory"] = memory
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    workdir = temp_workdir("bench-drive-transfer-")
    source = workdir / "source.bin"
    with open(source, "wb") as handle:
        for _ in range(args.size_mib):
            handle.write(os.urandom(CHUNK))
    stack = drive_stack(workdir, synapse_upload_limit=f"{args.size_mib * 2}M")
    try:
        stack.start()

        async def run() -> dict[str, list[float]]:
            user = await stack.user("bench")
            try:
                return await measure(stack, user.client.access_token, source, args.rounds)
            finally:
                await user.close()

        times = asyncio.run(run())
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = args.size_mib
    print(f"{mib} MiB, median of {args.rounds} round(s):")
    for direction, drive, hs in (
        ("upload", "drive_up", "hs_up"),
        ("download", "drive_down", "hs_down"),
    ):
        ratio = med[hs] / med[drive]
        verdict = "PASS" if ratio >= 1.0 else "FAIL"
        print(
            f"  {direction:8s} drive {med[drive]:6.2f} s ({mib / med[drive]:7.1f} MiB/s)   "
            f"synapse {med[hs]:6.2f} s ({mib / med[hs]:7.1f} MiB/s)   "
            f"ratio {ratio:.2f} — target >= 1.0: {verdict}"
        )
    growth = max(times["memory"])
    verdict = "PASS" if growth < MEMORY_LIMIT_MIB else "FAIL"
    print(
        f"  bridge peak memory growth: {growth:.1f} MiB — "
        f"target < {MEMORY_LIMIT_MIB} MiB: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
