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


async def drive_remote(rclone: str, stack) -> str:
    """An rclone remote for a new person's folder ``Bench`` under /dav/."""
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
    finally:
        await user.close()
    login = user.user_id.removeprefix("@").partition(":")[0]
    return (
        f":webdav,url='{stack.bridge.url}/dav/Bench/',vendor=other,user='{login}',"
        f"pass='{obscure(rclone, password)}':"
    )


def serve_reference(rclone: str, config: Path, served: Path) -> tuple[subprocess.Popen, str]:
    """``rclone serve webdav`` of an empty folder, and an rclone remote for it."""
    served.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [rclone, "--config", str(config), "serve", "webdav", str(served),
         "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return server, f":webdav,url='http://127.0.0.1:{port}/',vendor=other:"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("rclone serve webdav did not start") from None
            time.sleep(0.1)


async def measure(rclone: str, config: Path, stack, reference: str, source: Path, back: Path):
    """Each transfer to the reference, then the same to /dav/ (the two alternate, so
    that a change in the machine's load hits both alike)."""
    drive = await drive_remote(rclone, stack)
    times: dict[str, float] = {}
    async with MemoryWatch(stack.bridge.proc.pid) as watch:
        for name, remote in (("ref", reference), ("drive", drive)):
            times[f"{name}_up"] = await copyto(rclone, config, str(source), f"{remote}big.bin")
        for name, remote in (("ref", reference), ("drive", drive)):
            times[f"{name}_down"] = await copyto(rclone, config, f"{remote}big.bin", str(back))
            if back.stat().st_size != source.stat().st_size:
                raise RuntimeError(f"{name}: {back.stat().st_size} bytes came back")
            back.unlink()
    return times, watch.growth_mib


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
    server = None
    try:
        server, reference = serve_reference(rclone, config, workdir / "served")
        stack.start()
        load = os.getloadavg()[0]
        times, growth = asyncio.run(measure(rclone, config, stack, reference, source, back))
    finally:
        stack.stop()
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    mib = args.size_mib
    print(f"{mib} MiB with rclone's webdav backend, one run (load average {load:.1f}):")
    for direction, key in (("PUT", "up"), ("GET", "down")):
        drive, ref = times[f"drive_{key}"], times[f"ref_{key}"]
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
