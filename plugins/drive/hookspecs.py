"""The extension hooks the drive offers to other plugins (added when the drive loads,
through ``anywhere_hookspecs``; listed in docs/plugins.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from anywhere.bridge.api import Host
    from anywhere.storage.blobs import BlobOpener

# The same marker as anywhere.bridge.hookspecs.hookspec (pluggy matches markers by project name),
# made here so that the sync client does not import the runtime.
hookspec = pluggy.HookspecMarker("anywhere")


@hookspec
def anywhere_drive_blob_stores(bridge: Host) -> dict[str, BlobOpener] | None:
    """Return ``{URL scheme: opener}`` to keep the drive's file content in a store of
    your own (see docs/drive.md, "Storage backends").

    Called once when the drive starts (and by ``anywhere doctor``). When
    ``plugins.settings.drive.storage_url`` has your scheme (``yours://...``),
    ``opener(url)`` gets that whole URL and returns a :class:`anywhere.storage.blobs.BlobStore`;
    raise :class:`anywhere.storage.blobs.BlobError` saying what to fix when the URL is wrong. A
    plugin's scheme comes before PyFilesystem2's openers; a scheme given twice (in any
    letter case) stops start-up with both plugins named. Check a store against the
    contract with :func:`anywhere.bridge.testing.blobstore.check_blob_store`.
    """
