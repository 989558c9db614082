"""The drive on S3: a 1 GiB upload and download through the drive (HTTP API, drive on
``s3://``) against the same bytes put and got directly with aiobotocore on the same S3
server, with the bridge's memory watched.

Run: ``.venv/bin/python bench/bench_s3.py [--size-mib 1024]`` (needs the test extras:
Synapse and moto[server]; uses about 3 × the size of free disk in a temporary folder and
memory for moto's copy of the objects).

One run, on the same machine, against a real Synapse, the bridge and moto's S3 server:

* drive upload: ``PUT /_anywhere/drive/v1/folders/{id}/files/big.bin``, the body streamed
  from a file in 1 MiB chunks (the drive hashes it and sends it on to S3 in parts);
  direct upload: aiobotocore's multipart upload of the same file in parts of the drive's
  part size, the same number of parts in flight;
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
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drive_common import PREFIX, temp_workdir  # noqa: E402
from bench_drive_transfer import CHUNK, MemoryWatch, file_chunks, read_all  # noqa: E402

from bridge.testing.s3server import TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Server  # noqa: E402
from bridge.testing.stack import Stack  # noqa: E402
from storage.blobs_s3 import DEFAULT_PART_SIZE, PARTS_IN_FLIGHT  # noqa: E402

TARGET = 0.8


async def direct(s3: S3Server, bucket: str, source: Path) -> tuple[float, float]:
    """Multipart put and get of ``source`` with aiobotocore, as a tuned client would."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    size = source.stat().st_size
    config = AioConfig(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
        max_pool_connections=PARTS_IN_FLIGHT * 4,
    )
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


async def through_drive(stack: Stack, token: str, source: Path) -> tuple[float, float, float]:
    auth = {"Authorization": f"Bearer {token}"}
    size = source.stat().st_size
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        async with http.post(
            f"{stack.bridge.url}{PREFIX}/folders", json={"name": "Bench"}, headers=auth
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
                    "quota_bytes": args.size_mib * 4 * 1024 * 1024,
                }
            },
            bridge_extra={"logging": {"level": "WARNING"}},
        )
        stack.bridge.env = s3.env
        try:
            stack.start()

            async def run() -> tuple[tuple[float, float, float], tuple[float, float]]:
                user = await stack.user("bench")
                try:
                    drive = await through_drive(stack, user.client.access_token, source)
                finally:
                    await user.close()
                return drive, await direct(s3, "bench", source)

            (drive_up, drive_down, growth), (s3_up, s3_down) = asyncio.run(run())
        finally:
            stack.stop()
    finally:
        s3.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    mib = args.size_mib
    print(f"{mib} MiB, one run, drive on s3:// (moto server) against aiobotocore directly:")
    for direction, drive, ref in (("upload", drive_up, s3_up), ("download", drive_down, s3_down)):
        ratio = ref / drive
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(
            f"  {direction:8s} drive {drive:6.2f} s ({mib / drive:7.1f} MiB/s)   "
            f"aiobotocore {ref:6.2f} s ({mib / ref:7.1f} MiB/s)   "
            f"ratio {ratio:.2f} — target >= {TARGET}: {verdict}"
        )
    print(f"  bridge peak memory growth during the drive transfers: {growth:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
