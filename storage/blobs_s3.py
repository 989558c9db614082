"""The blob store on S3-compatible object storage, with aiobotocore.

``s3://BUCKET/PREFIX?endpoint=https://s3.example.org&region=eu-west-1``; the query may
also name ``credentials_file=PATH`` (a YAML file with ``access_key_id`` and
``secret_access_key``) and ``part_size=BYTES``. Without ``credentials_file`` the keys
come from botocore's usual places: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the
environment, ``AWS_PROFILE`` and ``~/.aws/credentials``, or an instance role. Keys are
never taken from the URL (which is logged) and never logged.

S3 cannot rename an object, and content is named by a SHA-256 known only once it has all
streamed in. So content is written once, under a random name, and a marker object named
by its hash says where it is. Layout under the prefix::

    objects/<token>           the content: one multipart upload (or one PUT when small)
    blobs/<sha256>/<token>    an empty marker: content <sha256> is objects/<token>

A reader sees content only through its marker, which is written after the content is
complete. An interrupted write leaves an incomplete multipart upload, or content with no
marker; :meth:`S3BlobStore.sweep_partial` aborts and removes both. Parts stream as they
fill: at most ``part_size`` bytes wait in the buffer and ``PARTS_IN_FLIGHT`` parts are
being sent, whatever the size of the content; a read keeps ``READ_AHEAD`` chunks
ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .base import Blob, BlobError, BlobNotFound, BlobTooLarge, check_sha256

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part (all but the last)
MAX_PART_SIZE = 5 * 1024**3
DEFAULT_PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 2
# what upload_part answers that complete_multipart_upload must be given back
PART_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1")
READ_AHEAD = 4  # chunks read from S3 before the reader has taken them
OBJECTS = "objects/"
MARKERS = "blobs/"
QUERY_KEYS = ("endpoint", "region", "credentials_file", "part_size")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
URL_HELP = "s3://BUCKET/PREFIX?endpoint=https://HOST&region=REGION"


def _quiet_botocore() -> None:
    """botocore logs signed request headers (with the access key id) at DEBUG; keep its
    loggers at INFO or above whatever the bridge's level is."""
    for name in ("botocore", "aiobotocore", "s3transfer"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def client_config(path_style: bool) -> Any:
    """The aiobotocore settings of the store (the benchmark's direct client uses them
    too). Each part carries a CRC32 the server checks (botocore's default), and is not
    hashed again with SHA-256 for the signature (what botocore does by itself over https
    when a checksum is sent; over plain http too here — the content's own SHA-256 is
    computed anyway). Downloads are not checksummed by botocore: a ranged GET cannot be."""
    from aiobotocore.config import AioConfig

    return AioConfig(
        s3={"addressing_style": "path" if path_style else "auto", "payload_signing_enabled": False},
        request_checksum_calculation="when_supported",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=PARTS_IN_FLIGHT * 4,
    )


class S3Location:
    """What an ``s3://`` URL names: bucket, key prefix, endpoint, region, where the keys
    are, part size. Refuses a URL it cannot use, saying which part is wrong."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3":
            raise BlobError(f"not an s3:// URL: use {URL_HELP}")
        if "@" in parts.netloc:
            raise BlobError(
                "plugins.settings.drive.storage_url holds S3 keys before the bucket name; "
                "the URL is logged, so keys are refused there: put them in the environment "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or in a file named by "
                "credentials_file= (see docs/drive.md)"
            )
        self.bucket = parts.netloc
        if not BUCKET_RE.fullmatch(self.bucket):
            raise BlobError(
                f"{self.bucket!r} in plugins.settings.drive.storage_url is not an S3 bucket "
                f"name (3-63 lower-case letters, digits, dots and dashes): use {URL_HELP}"
            )
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(QUERY_KEYS))
        if unknown:
            raise BlobError(
                f"unknown option(s) {', '.join(unknown)} in the s3:// storage_url; known: "
                f"{', '.join(QUERY_KEYS)}"
            )
        one = {key: values[-1] for key, values in query.items()}
        self.endpoint = one.get("endpoint") or None
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise BlobError(
                f"endpoint={self.endpoint} in the s3:// storage_url must be an http:// or "
                "https:// address, e.g. endpoint=https://s3.example.org"
            )
        if self.endpoint and "@" in urlsplit(self.endpoint).netloc:
            raise BlobError(
                "the endpoint in the s3:// storage_url holds a user name or key before '@': "
                "keys never go into the URL (it is logged); put them in the environment or "
                "in a credentials_file"
            )
        self.region = one.get("region") or None
        self.credentials_file = one.get("credentials_file") or None
        self.part_size = DEFAULT_PART_SIZE
        if "part_size" in one:
            try:
                self.part_size = int(one["part_size"])
            except ValueError:
                self.part_size = -1
            if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
                raise BlobError(
                    f"part_size={one['part_size']} in the s3:// storage_url must be a number "
                    f"of bytes from {MIN_PART_SIZE} (5 MiB) to {MAX_PART_SIZE} (5 GiB)"
                )

    def key(self, name: str) -> str:
        return self.prefix + name


def read_credentials_file(path: str) -> dict[str, str]:
    """``aws_access_key_id``/``aws_secret_access_key`` (and ``aws_session_token``) for
    botocore, from a YAML file with ``access_key_id``, ``secret_access_key`` (and
    ``session_token``). Errors name the file and the keys, never their values."""
    where = f"the S3 credentials file {path} (credentials_file= in the storage_url)"
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise BlobError(f"cannot read {where}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise BlobError(
            f"{where} is not YAML: write access_key_id: ... and secret_access_key: ... on two lines"
        ) from None
    if not isinstance(data, dict):
        data = {}
    missing = [k for k in ("access_key_id", "secret_access_key") if not data.get(k)]
    if missing:
        raise BlobError(f"{where} lacks {' and '.join(missing)}")
    keys = {
        "aws_access_key_id": str(data["access_key_id"]),
        "aws_secret_access_key": str(data["secret_access_key"]),
    }
    if data.get("session_token"):
        keys["aws_session_token"] = str(data["session_token"])
    return keys


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3BlobStore:
    """:class:`anywhere.storage.blobs.BlobStore` on an S3 bucket (AWS, MinIO, SeaweedFS,
    Ceph...)."""

    def __init__(self, location: S3Location, url: str, keys: dict[str, str]) -> None:
        self.location = location
        self.url = url
        self.part_size = location.part_size
        self._keys = keys
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._exits = contextlib.AsyncExitStack()
        self._where: dict[str, str] = {}  # sha256 -> token, for reads (content never changes)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    @classmethod
    def open(cls, url: str) -> S3BlobStore:
        location = S3Location(url)
        keys = read_credentials_file(location.credentials_file) if location.credentials_file else {}
        _quiet_botocore()
        return cls(location, url, keys)

    async def client(self) -> Any:
        """The one aiobotocore client, made on first use (the opener is synchronous)."""
        async with self._client_lock:
            if self._client is None:
                from aiobotocore.session import get_session

                session = get_session()
                if not self._keys and await session.get_credentials() is None:
                    raise BlobError(
                        f"no S3 keys for {self.url}: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY in the bridge's environment, or name a file "
                        "with credentials_file= in plugins.settings.drive.storage_url"
                    )
                config = client_config(path_style=bool(self.location.endpoint))
                self._client = await self._exits.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=self.location.endpoint,
                        region_name=self.location.region or "us-east-1",
                        config=config,
                        **self._keys,
                    )
                )
            return self._client

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request; failures become :class:`BlobError` saying what to check."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = await self.client()
        try:
            return await getattr(client, operation)(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchBucket":
                raise BlobError(
                    f"the bucket {self.location.bucket!r} does not exist at "
                    f"{self.location.endpoint or 'AWS'}: create it, or fix the bucket in "
                    "plugins.settings.drive.storage_url"
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                raise BlobError(
                    f"S3 refused the bridge's keys for {self.url} ({code}): check "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the credentials_file, and "
                    "that the keys may read and write the bucket"
                ) from None
            raise
        except BotoCoreError as exc:
            raise BlobError(f"S3 at {self.location.endpoint or 'AWS'}: {exc}") from None

    # ----- names -----
    def marker_prefix(self, sha256: str) -> str:
        return self.location.key(f"{MARKERS}{check_sha256(sha256)}/")

    def object_key(self, token: str) -> str:
        return self.location.key(OBJECTS + token)

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            page = await self.call(
                "list_objects_v2",
                Prefix=prefix,
                **({"ContinuationToken": token} if token else {}),
            )
            for item in page.get("Contents", []):
                yield item["Key"]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _tokens(self, sha256: str) -> list[str]:
        prefix = self.marker_prefix(sha256)
        return [key[len(prefix) :] async for key in self._list(prefix)]

    async def _token(self, sha256: str) -> str:
        token = self._where.get(sha256)
        if token is None:
            tokens = await self._tokens(sha256)
            if not tokens:
                raise BlobNotFound(f"the content {sha256[:12]} is missing from the storage")
            token = self._where[sha256] = tokens[0]
        return token

    # ----- writing -----
    async def writer(self, max_size: int | None = None) -> S3BlobWriter:
        token = secrets.token_hex(16)
        upload = await self.call("create_multipart_upload", Key=self.object_key(token))
        return S3BlobWriter(self, token, upload["UploadId"], max_size)

    async def install(self, token: str, sha256: str) -> None:
        """Make content ``objects/<token>`` visible as ``sha256``, or drop it when that
        content is stored already."""
        if await self.exists(sha256):
            await self.call("delete_object", Key=self.object_key(token))
            return
        await self.call("put_object", Key=self.marker_prefix(sha256) + token, Body=b"")

    # ----- reading -----
    async def read(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """One GET of the whole range, read ``READ_AHEAD`` chunks ahead of the caller so
        that S3 keeps sending while the caller sends on what it has."""
        token = await self._token(sha256)
        if end is not None and end <= start:
            return
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await self.call("get_object", Key=self.object_key(token), Range=wanted)
        except Exception as exc:
            if _error_code(exc) == "InvalidRange":  # start at or past the end
                return
            if _error_code(exc) == "NoSuchKey":
                self._where.pop(sha256, None)
                raise BlobNotFound(
                    f"the content {sha256[:12]} is missing from the storage"
                ) from None
            raise
        body = response["Body"]
        ahead: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(READ_AHEAD)

        async def pump() -> None:
            try:
                # the socket gives small pieces; the caller gets about chunk_size each
                pieces: list[bytes] = []
                size = 0
                async for piece in body.iter_chunks(chunk_size):
                    pieces.append(piece)
                    size += len(piece)
                    if size >= chunk_size:
                        await ahead.put(b"".join(pieces))
                        pieces, size = [], 0
                if pieces:
                    await ahead.put(b"".join(pieces))
                await ahead.put(None)
            except Exception as exc:
                await ahead.put(exc)

        pumping = asyncio.create_task(pump())
        try:
            while (chunk := await ahead.get()) is not None:
                if isinstance(chunk, Exception):
                    raise chunk
                yield chunk
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping
            body.close()

    async def head(self, sha256: str, length: int = 4096) -> bytes:
        return b"".join([chunk async for chunk in self.read(sha256, 0, length)])

    async def exists(self, sha256: str) -> bool:
        page = await self.call("list_objects_v2", Prefix=self.marker_prefix(sha256), MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    async def delete(self, sha256: str) -> None:
        """The marker goes first: a crash in between leaves content no marker names, which
        the sweep removes."""
        prefix = self.marker_prefix(sha256)
        self._where.pop(sha256, None)
        for token in await self._tokens(sha256):
            await self.call("delete_object", Key=prefix + token)
            await self.call("delete_object", Key=self.object_key(token))

    async def hashes(self) -> list[str]:
        found: set[str] = set()
        async for key in self._list(self.location.key(MARKERS)):
            found.add(key[len(self.location.key(MARKERS)) :].partition("/")[0])
        return sorted(found)

    async def sweep_partial(self) -> int:
        """Abort the multipart uploads interrupted writes left, and remove content whose
        marker was never written; returns how many. Meant for start-up, while no write
        of this store is under way (as a second host taking over a stopped one)."""
        swept = 0
        for key, upload_id in await self.incomplete_uploads():
            with contextlib.suppress(Exception):  # completed or aborted meanwhile
                await self.call("abort_multipart_upload", Key=key, UploadId=upload_id)
                swept += 1
        named: set[str] = set()
        async for key in self._list(self.location.key(MARKERS)):
            named.add(key.rpartition("/")[2])
        async for key in self._list(self.location.key(OBJECTS)):
            if key.rpartition("/")[2] not in named:
                await self.call("delete_object", Key=key)
                swept += 1
        return swept

    async def incomplete_uploads(self) -> list[tuple[str, str]]:
        """``(key, upload id)`` of every multipart upload begun and not finished."""
        found: list[tuple[str, str]] = []
        marks: dict[str, str] = {}
        while True:
            page = await self.call(
                "list_multipart_uploads", Prefix=self.location.key(OBJECTS), **marks
            )
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
            if not page.get("IsTruncated"):
                return found
            marks = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    async def close(self) -> None:
        await self._exits.aclose()
        self._client = None


class S3BlobWriter:
    """Streams content into one multipart upload, a part at a time, hashing as it goes."""

    def __init__(
        self, store: S3BlobStore, token: str, upload_id: str, max_size: int | None
    ) -> None:
        self.store = store
        self.token = token
        self.key = store.object_key(token)
        self.upload_id = upload_id
        self.max_size = max_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self._sending: list[asyncio.Task] = []
        self._parts: dict[int, dict[str, Any]] = {}
        self._hashed: asyncio.Future = asyncio.get_running_loop().create_future()
        self._hashed.set_result(None)  # nothing before the first part
        self._done = False

    @property
    def buffered(self) -> int:
        """Bytes waiting for their part to fill (less than one part)."""
        return self._buffered

    @property
    def parts_started(self) -> int:
        return len(self._sending)

    @property
    def parts_in_flight(self) -> int:
        return sum(1 for task in self._sending if not task.done())

    async def wait_for_parts(self) -> None:
        """Wait until every part started has been sent."""
        await asyncio.gather(*self._sending)

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise BlobError("this write was already finished")
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            await self.abort()
            raise BlobTooLarge(self.max_size)
        self._buffer.append(bytes(chunk))
        self._buffered += len(chunk)
        while self._buffered >= self.store.part_size:
            await self._send_part(self._take(self.store.part_size))

    def _take(self, size: int) -> bytes:
        data = b"".join(self._buffer)
        self._buffer = [data[size:]] if len(data) > size else []
        self._buffered = len(data) - min(size, len(data))
        return data[:size]

    async def _send_part(self, data: bytes) -> None:
        self._raise_failed_part()
        await self._slots.acquire()  # bounds memory: PARTS_IN_FLIGHT parts at most
        number = len(self._sending) + 1
        hashed_before = self._hashed
        self._hashed = asyncio.get_running_loop().create_future()
        self._sending.append(
            asyncio.create_task(self._upload_part(number, data, hashed_before, self._hashed))
        )

    async def _upload_part(
        self, number: int, data: bytes, hashed_before: asyncio.Future, hashed: asyncio.Future
    ) -> None:
        """Hash the part (in a worker thread, after the part before it: the SHA-256 is of
        the whole content in order), then send it; the caller goes on receiving."""
        try:
            try:
                await asyncio.shield(hashed_before)
                await asyncio.to_thread(self._hash.update, data)
            finally:
                if not hashed.done():
                    hashed.set_result(None)
            response = await self.store.call(
                "upload_part",
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
            self._parts[number] = {
                "PartNumber": number,
                "ETag": response["ETag"],
                **{k: v for k, v in response.items() if k in PART_CHECKSUMS},
            }
        finally:
            self._slots.release()

    def _raise_failed_part(self) -> None:
        for task in self._sending:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def commit(self) -> Blob:
        if self._done:
            raise BlobError("this write was already finished")
        try:
            rest = self._take(self._buffered)
            if not self._sending:  # small content: one PUT instead of a one-part upload
                await asyncio.to_thread(self._hash.update, rest)
                await self.store.call("put_object", Key=self.key, Body=rest)
                await self._abort_upload()
            else:
                if rest:
                    await self._send_part(rest)
                await self.wait_for_parts()
                await self.store.call(
                    "complete_multipart_upload",
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": [self._parts[n] for n in sorted(self._parts)]},
                )
            sha256 = self._hash.hexdigest()
            await self.store.install(self.token, sha256)
        except BaseException:
            await self.abort()
            with contextlib.suppress(Exception):
                await self.store.call("delete_object", Key=self.key)
            raise
        self._done = True
        return Blob(sha256, self.size)

    async def _abort_upload(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.call("abort_multipart_upload", Key=self.key, UploadId=self.upload_id)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer, self._buffered = [], 0
        for task in self._sending:
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self._abort_upload()
