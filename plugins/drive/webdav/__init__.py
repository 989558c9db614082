"""WebDAV for the drive: ``/dav/`` (see :mod:`.server`), signed in with app passwords
(:mod:`.passwords`); locks and dead properties in the bridge's database (:mod:`.state`).
See docs/drive.md, "WebDAV"."""
