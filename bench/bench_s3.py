"""The drive on S3: a 1 GiB upload and download through the drive (HTTP API, drive on
``s3://``) against the same bytes put and got directly with aiobotocore on the same S3
server, with the bridge's memory watched.

Run: ``.venv/bin/python bench/bench_s3.py [--size-mib 1024] [--rounds 1]`` (needs the test extras:
Synapse and moto[server]; uses about 3 × the size of free disk in a temporary folder and
memory for moto's copy of the objects).

In one run (each round: the drive, then directly; medians over the rounds), on the same
machine, against a real Synapse, the bridge and moto's S3 server:

* drive upload: ``PUT /_anywhere/drive/v1/folders/{id}/files/big.bin``, the body streamed
  from a file in 1 MiB chunks (the drive hashes it and sends it on to S3 in parts);
  direct upload: aiobotocore's multipart upload of the same file in parts of the drive's
  part size, the same number of parts in flight, the same client settings;
* drive download: ``GET`` of that file; direct download: aiobotocore's ``get_object`` of
  the same object; both read to the end and dropped.

Target (issue 17): direct time / drive time ≥ 0.8 in both directions. The bridge's peak
resident memory growth during the drive transfers is printed too. A benchmark reports;
exit 0 whatever the figures.
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
from bench_drive_common import PREFIX, temp_workdir  # noqa: E402
from bench_drive_transfer import CHUNK, MemoryWatch, file_chunks, read_all  # noqa: E402

from anywhere.bridge.testing.s3server import TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Server  # noqa: E402
from anywhere.bridge.testing.stack import Stack  # noqa: E402
from anywhere.storage.blobs_s3 import DEFAULT_PART_SIZE, PARTS_IN_FLIGHT, client_config  # noqa: E402

TARGET = 0.8


async def direct(s3: S3Server, bucket: str, source: Path) -> tuple[float, float]:
    """Multipart put and get of ``source`` with aiobotocore, as a tuned client would."""
    from aiobotocore.session import get_session

    size = source.stat().st_size
    config = client_config(path_style=True)
    async with get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        config=config,
    ) as client:
        started = time.perf_counter()
        upload = await client.create_multipart_upload(Bucket=bucket, Key="direct.bin")
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        etags: dict[int, str] = {}

        async def put(number: int, data: bytes) -> None:
            try:
                response = await client.upload_part(
                    Bucket=bucket,
                    Key="direct.bin",
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=data,
                )
                etags[number] = response["ETag"]
            finally:
                slots.release()

        tasks = []
        with open(source, "rb") as handle:
            number = 0
            while data := await asyncio.to_thread(handle.read, DEFAULT_PART_SIZE):
                number += 1
                await slots.acquire()
                tasks.append(asyncio.create_task(put(number, data)))
        await asyncio.gather(*tasks)
        await client.complete_multipart_upload(
            Bucket=bucket,
            Key="direct.bin",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
        )
        up = time.perf_counter() - started
        started = time.perf_counter()
        response = await client.get_object(Bucket=bucket, Key="direct.bin")
        got = 0
        async for chunk in response["Body"].iter_chunks(CHUNK):
            got += len(chunk)
        assert got == size
        down = time.perf_counter() - started
        await client.delete_object(Bucket=bucket, Key="direct.bin")
    return up, down


async def through_drive(
    stack: Stack, token: str, source: Path, round_no: int
) -> tuple[float, float, float]:
    auth = {"Authorization": f"Bearer {token}"}
    size = source.stat().st_size
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        async with http.post(
            f"{stack.bridge.url}{PREFIX}/folders", json={"name": f"Bench {round_no}"}, headers=auth
        ) as resp:
            folder = (await resp.json())["id"]
        url = f"{stack.bridge.url}{PREFIX}/folders/{folder}/files/big.bin"
        async with MemoryWatch(stack.bridge.proc.pid) as watch:
            started = time.perf_counter()
            headers = {**auth, "Content-Length": str(size)}
            async with http.put(url, data=file_chunks(source), headers=headers) as resp:
                assert resp.status == 201, await resp.text()
            up = time.perf_counter() - started
            started = time.perf_counter()
            async with http.get(url, headers=auth) as resp:
                assert resp.status == 200 and await read_all(resp) == size
            down = time.perf_counter() - started
        async with http.delete(url, headers=auth) as resp:
            pass
    return up, down, watch.growth_mib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    workdir = temp_workdir("bench-s3-")
    source = workdir / "source.bin"
    with open(source, "wb") as handle:
        for _ in range(args.size_mib):
            handle.write(os.urandom(CHUNK))
    s3 = S3Server(workdir / "s3")
    try:
        s3.start()
        stack = Stack(
            workdir,
            ["basics", "policy", "drive"],
            settings={
                "drive": {
                    "storage_url": s3.storage_url("bench", "drive"),
                    "quota_bytes": args.size_mib * (args.rounds + 2) * 1024 * 1024,
                }
            },
            bridge_extra={"logging": {"level": "WARNING"}},
        )
        stack.bridge.env = s3.env
        try:
            stack.start()

            async def run() -> list[tuple[float, ...]]:
                user = await stack.user("bench")
                rounds = []
                try:
                    for n in range(args.rounds):
                        drive = await through_drive(stack, user.client.access_token, source, n)
                        rounds.append(drive + await direct(s3, "bench", source))
                finally:
                    await user.close()
                return rounds

            rounds = asyncio.run(run())
        finally:
            stack.stop()
    finally:
        s3.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    drive_up, drive_down, growth, s3_up, s3_down = (
        statistics.median(column) for column in zip(*rounds, strict=True)
    )
    growth = max(r[2] for r in rounds)
    mib = args.size_mib
    print(
        f"{mib} MiB, median of {args.rounds} round(s), drive on s3:// (moto server) against "
        "aiobotocore directly:"
    )
    for direction, drive, ref in (("upload", drive_up, s3_up), ("download", drive_down, s3_down)):
        ratio = ref / drive
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(
            f"  {direction:8s} drive {drive:6.2f} s ({mib / drive:7.1f} MiB/s)   "
            f"aiobotocore {ref:6.2f} s ({mib / ref:7.1f} MiB/s)   "
            f"ratio {ratio:.2f} — target >= {TARGET}: {verdict}"
        )
    print(f"  bridge peak memory growth during the drive transfers: {growth:.1f} MiB")
    if args.rounds > 1:
        for n, r in enumerate(rounds):
            print(f"  round {n}: up {r[0]:.2f} s / {r[3]:.2f} s, down {r[1]:.2f} s / {r[4]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
