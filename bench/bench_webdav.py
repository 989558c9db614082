"""WebDAV transfers: a 1 GiB PUT and GET with rclone's webdav backend against the
bridge's ``/dav/``, and the same with rclone against ``rclone serve webdav`` of a plain
local folder, with the bridge's memory watched.

Run: ``.venv/bin/python bench/bench_webdav.py [--size-mib 1024]`` (needs the test
extras for Synapse and Debian's ``rclone``; uses about 5 × the size of free disk in a
temporary folder).

Both sides are timed the same way: ``rclone copyto`` of one file from a local folder to
the server (one streamed PUT), then back (one GET), on loopback. The drive's side is a
real Synapse and the bridge (drive on ``osfs://``), signed in with an app password; the
reference is ``rclone serve webdav`` of an empty folder. The bridge's resident memory
(VmRSS) is sampled every 20 ms during its transfers. Targets (issue 17): the drive's
time ≤ the reference's in both directions (ratio reference/drive ≥ 1.0), and the
bridge's peak memory growing by < 64 MiB. A benchmark reports; exit 0 whatever the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drive_common import PREFIX, drive_stack, temp_workdir  # noqa: E402
from bench_drive_transfer import CHUNK, MEMORY_LIMIT_MIB, MemoryWatch  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def obscure(rclone: str, secret: str) -> str:
    return subprocess.run(
        [rclone, "obscure", secret], check=True, capture_output=True, text=True
    ).stdout.strip()


async def copyto(rclone: str, config: Path, source: str, target: str) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        rclone, "--config", str(config), "copyto", source, target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0]
    if proc.returncode != 0:
        raise RuntimeError(f"rclone copyto {source} {target} failed:\n{out.decode()}")
    return time.perf_counter() - started


async def up_and_down(rclone: str, config: Path, source: Path, remote: str, back: Path):
    up = await copyto(rclone, config, str(source), f"{remote}big.bin")
    down = await copyto(rclone, config, f"{remote}big.bin", str(back))
    if back.stat().st_size != source.stat().st_size:
        raise RuntimeError(f"{back} has {back.stat().st_size} bytes, not {source.stat().st_size}")
    back.unlink()
    return up, down


async def bench_drive(rclone: str, config: Path, stack, source: Path, back: Path):
    user = await stack.user("bench")
    try:
        auth = {"Authorization": f"Bearer {user.client.access_token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{stack.bridge.url}{PREFIX}/folders", json={"name": "Bench"}, headers=auth
            ) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(
                f"{stack.bridge.url}{PREFIX}/app-passwords", json={"name": "bench"}, headers=auth
            ) as resp:
                password = (await resp.json())["password"]
        login = user.user_id.removeprefix("@").partition(":")[0]
        remote = (
            f":webdav,url='{stack.bridge.url}/dav/Bench/',vendor=other,user='{login}',"
            f"pass='{obscure(rclone, password)}':"
        )
        async with MemoryWatch(stack.bridge.proc.pid) as watch:
            up, down = await up_and_down(rclone, config, source, remote, back)
        return up, down, watch.growth_mib
    finally:
        await user.close()


async def bench_reference(rclone: str, config: Path, workdir: Path, source: Path, back: Path):
    served = workdir / "served"
    served.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [rclone, "--config", str(config), "serve", "webdav", str(served),
         "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("rclone serve webdav did not start") from None
                await asyncio.sleep(0.1)
        remote = f":webdav,url='http://127.0.0.1:{port}/',vendor=other:"
        return await up_and_down(rclone, config, source, remote, back)
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    rclone = shutil.which("rclone")
    if rclone is None:
        print("rclone is not installed (Debian package rclone)", file=sys.stderr)
        return 1
    workdir = temp_workdir("bench-webdav-")
    source, back, config = workdir / "source.bin", workdir / "back.bin", workdir / "rclone.conf"
    config.write_text("")
    with open(source, "wb") as handle:
        for _ in range(args.size_mib):
            handle.write(os.urandom(CHUNK))
    stack = drive_stack(workdir)
    try:
        ref_up, ref_down = asyncio.run(bench_reference(rclone, config, workdir, source, back))
        stack.start()
        up, down, growth = asyncio.run(bench_drive(rclone, config, stack, source, back))
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    mib = args.size_mib
    print(f"{mib} MiB with rclone's webdav backend, one run:")
    for direction, drive, ref in (("PUT", up, ref_up), ("GET", down, ref_down)):
        ratio = ref / drive
        verdict = "PASS" if ratio >= 1.0 else "FAIL"
        print(
            f"  {direction}  /dav/ {drive:6.2f} s ({mib / drive:7.1f} MiB/s)   "
            f"rclone serve webdav {ref:6.2f} s ({mib / ref:7.1f} MiB/s)   "
            f"ratio {ratio:.2f} — target >= 1.0: {verdict}"
        )
    verdict = "PASS" if growth < MEMORY_LIMIT_MIB else "FAIL"
    print(
        f"  bridge peak memory growth: {growth:.1f} MiB — target < {MEMORY_LIMIT_MIB} MiB: "
        f"{verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
