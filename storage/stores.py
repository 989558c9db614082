"""Opening a blob store by URL: :func:`open_blob_store` picks the implementation by scheme.

Its own module, apart from :mod:`anywhere.storage.blobs`: the stores it opens
(:mod:`anywhere.storage.blobs_fs`, :mod:`anywhere.storage.blobs_s3`) are built on that one.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import BLOB_STORE_METHODS, BlobError, BlobOpener, BlobStore


def open_blob_store(url: str, openers: Mapping[str, BlobOpener] | None = None) -> BlobStore:
    """Open the blob store at ``url``.

    A scheme in ``openers`` (what plugins give through ``anywhere_blob_stores``) is
    opened by its opener; ``s3://bucket/prefix?endpoint=...`` by Anywhere's S3 store
    (:mod:`anywhere.storage.blobs_s3`); anything else by PyFilesystem2:
    ``osfs:///var/lib/anywhere/drive``, ``mem://``, or any opener that is installed.
    """
    scheme = url.partition("://")[0].lower()
    opener = (openers or {}).get(scheme)
    if opener is None and scheme == "s3":
        from .blobs_s3 import S3BlobStore

        return S3BlobStore.open(url)
    if opener is None:
        from .blobs_fs import FSBlobStore

        return FSBlobStore.open(url)
    store = opener(url)
    missing = [name for name in BLOB_STORE_METHODS if not callable(getattr(store, name, None))]
    if missing:
        raise BlobError(
            f"the store opened for {scheme}:// ({type(store).__name__}) lacks "
            f"{', '.join(missing)}: a blob store implements anywhere.storage.blobs.BlobStore"
        )
    return store
