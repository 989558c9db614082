"""The drive's blob store: file content kept by its SHA-256, on a filesystem named by URL.

Anywhere code talks to :class:`BlobStore` only; :func:`anywhere.storage.stores.open_blob_store`
(its own module, since it imports the stores built on this one) picks the implementation
by URL scheme (``s3://``: :mod:`anywhere.storage.blobs_s3`; anything else:
PyFilesystem2, see :mod:`anywhere.storage.blobs_fs`), so a library can be swapped without touching
the drive.

Content is written to a temporary name while it streams in and moved to its final,
content-addressed name only once it is complete and hashed: a reader never sees a
partial blob, identical content is stored once, and an interrupted upload leaves at most
a temporary file that :meth:`BlobStore.sweep_partial` removes at start-up.

A complete local file can also be handed to a store whole (:func:`adopt_file`): a store
that offers ``staging_folder()`` and ``adopt()`` (the filesystem store does) takes a file
prepared in that folder by renaming it into place, without copying; any other store gets
it streamed through its :meth:`BlobStore.writer`. The drive's resumable uploads use this.
"""

from __future__ import annotations

# The interface and its helpers live in .base (the stores import that); this module is
# the public face, with open_blob_store, which imports the stores (.stores).
from .base import (
    BLOB_STORE_METHODS,
    FILE_CHUNK,
    SHA256_RE,
    AdoptingBlobStore,
    Blob,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    BlobWriter,
    StagedFile,
    UnsafeBlobPath,
    adopt_file,
    check_sha256,
    staging_folder,
    stream_file,
)
from .stores import open_blob_store

__all__ = [
    "SHA256_RE",
    "BlobError",
    "BlobNotFound",
    "BlobTooLarge",
    "UnsafeBlobPath",
    "Blob",
    "BlobWriter",
    "BlobStore",
    "check_sha256",
    "AdoptingBlobStore",
    "FILE_CHUNK",
    "staging_folder",
    "adopt_file",
    "stream_file",
    "StagedFile",
    "BLOB_STORE_METHODS",
    "open_blob_store",
]
