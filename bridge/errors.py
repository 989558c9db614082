"""Errors a person can act on: each says what was wrong, where, and what to do."""

from __future__ import annotations


class AnywhereError(Exception):
    """Base class for errors Anywhere reports to a person instead of a traceback."""


class ConfigError(AnywhereError):
    """A config value is missing or wrong.

    ``key`` is the dotted path (``appservice.port``), ``found`` what the file had and
    ``expected`` what would be accepted; the message reads as one line in a log.
    """

    def __init__(self, key: str, expected: str, found: object = None, hint: str = "") -> None:
        self.key = key
        self.expected = expected
        self.found = found
        self.hint = hint
        message = f"{key}: expected {expected}"
        if found is not None:
            message += f", found {found!r}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


class PluginLoadError(AnywhereError):
    """A plugin named in ``plugins.enabled`` could not be loaded."""


from anywhere.storage.errors import SchemaTooNewError, StorageError  # noqa: E402,F401 (re-exported)
