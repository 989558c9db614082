"""Storage errors a person can act on (the storage package imports nothing from bridge)."""


class StorageError(Exception):
    """A problem with the database or the blob store that stops Anywhere from starting."""


class SchemaTooNewError(StorageError):
    """The database was written by a newer version of Anywhere or of a plugin."""
