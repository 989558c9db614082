"""The old top-level names (``bridge``, ``plugins``, ``policy``, ``storage``), for one release.

Before 0.2 Anywhere installed four generic top-level packages. They are now
``anywhere.bridge``, ``anywhere.plugins``, ... (docs/upgrading.md). So that homeserver.yaml
(``policy.synapse_module.AnywherePolicyModule``), ``python -m bridge``, ``-p
bridge.testing.fixtures`` and third-party ``from bridge import ...`` keep working, this
finder answers an old name with the new module itself (one module object under two names,
never a second copy) and warns with a :class:`DeprecationWarning` that names the new one.
The warning is also logged (logger ``anywhere.deprecation``), since Synapse and the
``anywhere`` command hide DeprecationWarnings by default.

It installs nothing at the top level of site-packages: ``anywhere_legacy_names.pth`` calls
:func:`install` at interpreter start-up. Another distribution's real top-level package of
the same name always wins: an old name is answered only when no other finder finds it, or
when what they find is Anywhere's own folder (a source checkout on ``sys.path``). The
finder sits at the front of ``sys.meta_path`` for that reason: behind the path finder it
would see ``bridge.events`` only after the path finder had loaded a second copy from the
aliased package's ``__path__``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import warnings
from types import ModuleType

# Imported at every interpreter start-up (by the .pth file): importlib.util and logging,
# which cost milliseconds, are imported only when an old name is actually used.

OLD_NAMES = ("bridge", "plugins", "policy", "storage")
NEW_PACKAGE = "anywhere"
REMOVED_IN = "Anywhere 0.3"
LOGGER = "anywhere.deprecation"


class AnywhereDeprecationWarning(DeprecationWarning):
    """An old module name of Anywhere was imported."""


def _real_dir(spec: importlib.machinery.ModuleSpec | None) -> str | None:
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return os.path.realpath(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return os.path.realpath(spec.origin)
    return None


def _stacklevel() -> int:
    """The stacklevel, for a warning issued by :func:`_warn`, of the importer's frame.
    ``warnings.warn`` skips the import system's own frames when it counts, so only the
    frames of this file are counted."""
    level = 1
    frame = sys._getframe(2)  # noqa: SLF001 (_warn's caller)
    while frame is not None:
        filename = frame.f_code.co_filename
        internal = "importlib" in filename and "_bootstrap" in filename
        if not internal:
            level += 1
            if filename != __file__:
                return level
        frame = frame.f_back
    return 1


def _warn(old: str, new: str) -> None:
    message = (
        f"the module name {old!r} is deprecated and goes away in {REMOVED_IN}: "
        f"use {new!r} instead (docs/upgrading.md)"
    )
    warnings.warn(message, AnywhereDeprecationWarning, stacklevel=_stacklevel())
    import logging

    logging.getLogger(LOGGER).warning("%s", message)


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    from importlib.util import find_spec

    return find_spec(name)


class _AliasLoader:
    """Loads an old name as the already-importable new module (the same object)."""

    def __init__(self, old: str, new: str) -> None:
        self.old = old
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(self.old, self.new)
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set module.__spec__ to the alias's spec; the module
        # keeps its own (its __name__, __file__ and __path__ are untouched).
        module.__spec__ = self._spec


class LegacyNamesFinder:
    """Answers ``bridge``, ``bridge.x``, ... with ``anywhere.bridge``, ``anywhere.bridge.x``."""

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        if top not in OLD_NAMES:
            return None
        new = f"{NEW_PACKAGE}.{fullname}"
        if rest:
            parent = fullname.rpartition(".")[0]
            parent_module = sys.modules.get(parent)
            if parent_module is None or parent_module is not sys.modules.get(f"anywhere.{parent}"):
                return None  # the old parent is someone else's real package
        elif not self._ours_or_nobodys(top):
            return None
        try:
            new_spec = _find_spec(new)
        except ImportError:
            return None
        if new_spec is None:
            return None
        if rest and fullname.endswith(".__main__") and new_spec.origin:
            # `python -m bridge`: runpy asks the loader for code, so run the real file
            # under the old name (it only calls anywhere's CLI; importing the old package
            # has warned already).
            from importlib.util import spec_from_file_location

            return spec_from_file_location(fullname, new_spec.origin)
        is_package = new_spec.submodule_search_locations is not None
        spec = importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(fullname, new), is_package=is_package
        )
        if is_package:
            spec.submodule_search_locations = list(new_spec.submodule_search_locations or [])
        return spec

    def _ours_or_nobodys(self, top: str) -> bool:
        """True when no other finder finds ``top``, or only finds Anywhere's own folder."""
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(top, None)
            except (ImportError, ValueError):
                continue
            if spec is None:
                continue
            ours = _find_spec(f"{NEW_PACKAGE}.{top}")
            return _real_dir(spec) is not None and _real_dir(spec) == _real_dir(ours)
        return True


def install() -> LegacyNamesFinder:
    """Put the finder at the front of ``sys.meta_path`` (once); return it."""
    for finder in sys.meta_path:
        if isinstance(finder, LegacyNamesFinder):
            return finder
    finder = LegacyNamesFinder()
    sys.meta_path.insert(0, finder)
    return finder
