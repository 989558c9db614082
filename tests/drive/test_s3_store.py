"""The S3 blob store (storage/blobs_s3.py) against a real S3 server (moto's, started by
the tests): the blob store contract, streaming in bounded parts, ranged reads, the sweep
of interrupted uploads, and URLs and keys refused with a reason."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from anywhere.bridge.testing.blobstore import check_blob_store
from anywhere.bridge.testing.s3server import (
    TEST_ACCESS_KEY,
    TEST_SECRET_KEY,
    S3Server,
    require_moto,
)
from anywhere.storage.blobs import BlobError, BlobNotFound
from anywhere.storage.blobs_s3 import MIN_PART_SIZE, PARTS_IN_FLIGHT, S3BlobStore
from anywhere.storage.stores import open_blob_store

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    require_moto()
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_keys(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)


_buckets = iter(range(1_000_000))


def fresh_url(s3: S3Server, **options: str) -> str:
    return s3.storage_url(f"drive-{next(_buckets)}", "anywhere/blobs", **options)


async def test_the_s3_store_keeps_the_blob_store_contract(s3, s3_keys):
    store = open_blob_store(fresh_url(s3))
    assert isinstance(store, S3BlobStore)
    await check_blob_store(store)


async def test_keys_come_from_the_credentials_file_named_in_the_url(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    keys = tmp_path / "s3.yaml"
    keys.write_text(f"access_key_id: {TEST_ACCESS_KEY}\nsecret_access_key: {TEST_SECRET_KEY}\n")
    await check_blob_store(open_blob_store(fresh_url(s3, credentials_file=str(keys))))


async def test_a_large_content_streams_in_parts_and_reads_back_in_ranges(s3, s3_keys):
    store = open_blob_store(fresh_url(s3, part_size=str(MIN_PART_SIZE)))
    try:
        data = os.urandom(3 * MIN_PART_SIZE + 12345)
        writer = await store.writer()
        for i in range(0, len(data), 1 << 20):
            await writer.write(data[i : i + (1 << 20)])
            # never more than one part buffered and PARTS_IN_FLIGHT being sent
            assert writer.buffered < MIN_PART_SIZE
            assert writer.parts_in_flight <= PARTS_IN_FLIGHT
        assert writer.parts_started == 3, "three full parts went out before the commit"
        blob = await writer.commit()
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        back = b"".join([c async for c in store.read(blob.sha256)])
        assert back == data
        middle = b"".join(
            [c async for c in store.read(blob.sha256, MIN_PART_SIZE - 7, 2 * MIN_PART_SIZE + 9)]
        )
        assert middle == data[MIN_PART_SIZE - 7 : 2 * MIN_PART_SIZE + 9]
        assert b"".join([c async for c in store.read(blob.sha256, len(data) + 10)]) == b""
    finally:
        await store.close()


async def test_the_sweep_aborts_uploads_and_removes_content_no_marker_names(s3, s3_keys):
    url = fresh_url(s3, part_size=str(MIN_PART_SIZE))
    store = open_blob_store(url)
    kept = await store.writer()
    await kept.write(b"kept")
    blob = await kept.commit()
    # a crash mid-upload: parts sent, never completed
    crashed = await store.writer()
    await crashed.write(os.urandom(MIN_PART_SIZE + 1))
    await crashed.wait_for_parts()
    # a crash after the content was complete but before its marker was written
    client = s3.client()
    bucket = url.split("/")[2]
    client.put_object(Bucket=bucket, Key="anywhere/blobs/objects/" + "0" * 32, Body=b"orphan")
    await store.close()

    again = open_blob_store(url)
    try:
        assert len(await again.incomplete_uploads()) == 1
        assert await again.sweep_partial() == 2
        assert await again.incomplete_uploads() == []
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert sorted(keys) == sorted(
            [
                f"anywhere/blobs/blobs/{blob.sha256}/{kept.token}",
                f"anywhere/blobs/objects/{kept.token}",
            ]
        )
        assert b"".join([c async for c in again.read(blob.sha256)]) == b"kept"
    finally:
        await again.close()


async def test_missing_content_and_a_missing_bucket_are_said_plainly(s3, s3_keys):
    store = open_blob_store(f"s3://no-such-bucket/x?endpoint={s3.endpoint}")
    try:
        with pytest.raises(BlobError, match="the bucket 'no-such-bucket' does not exist"):
            await store.writer()
    finally:
        await store.close()
    store = open_blob_store(fresh_url(s3))
    try:
        with pytest.raises(BlobNotFound):
            await store.head("a" * 64)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("s3://KEY:hunter2secret@bucket/p", "keys are refused there"),
        ("s3://Bad_Bucket/p", "is not an S3 bucket name"),
        ("s3://bucket/p?endpont=http://x", "unknown option(s) endpont"),
        ("s3://bucket/p?endpoint=ftp://x", "must be an http:// or https:// address"),
        ("s3://bucket/p?endpoint=https://KEY:hunter2secret@s3.example", "before '@'"),
        ("s3://bucket/p?part_size=1000", "part_size=1000 in the s3:// storage_url"),
        ("s3://bucket/p?credentials_file=/nonexistent/s3.yaml", "cannot read the S3 credentials"),
    ],
)
async def test_a_wrong_s3_url_is_refused_with_what_to_fix(url, said):
    with pytest.raises(BlobError, match=re.escape(said)) as caught:
        open_blob_store(url)
    assert "hunter2secret" not in str(caught.value)


async def test_a_credentials_file_without_a_secret_names_what_is_missing(tmp_path):
    keys = tmp_path / "s3.yaml"
    keys.write_text("access_key_id: AKIA\n")
    with pytest.raises(BlobError, match="lacks secret_access_key"):
        open_blob_store(f"s3://bucket/p?credentials_file={keys}")


async def test_no_keys_anywhere_is_said_with_where_to_put_them(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = open_blob_store(f"s3://bucket/p?endpoint={s3.endpoint}")
    try:
        with pytest.raises(BlobError, match="no S3 keys for .* set AWS_ACCESS_KEY_ID"):
            await store.writer()
    finally:
        await store.close()


async def test_an_s3_server_that_does_not_answer_is_named(s3_keys):
    from anywhere.bridge.testing.synapse import free_port

    store = open_blob_store(f"s3://bucket/p?endpoint=http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BlobError, match=r"S3 at http://127\.0\.0\.1:\d+: Could not connect"):
            await store.writer()
    finally:
        await store.close()
