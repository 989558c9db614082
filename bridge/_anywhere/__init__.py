"""Anywhere, installed: the one top-level package of the ``anywhere-bridge`` distribution.

The repository's folders are its subpackages (setup.py maps them)::

    bridge/   -> anywhere.bridge    the runtime, CLI, plugin contract, test fixtures
    plugins/  -> anywhere.plugins   the built-in plugins
    policy/   -> anywhere.policy    the policy engine and the Synapse module
    storage/  -> anywhere.storage   database, migrations, blob stores

This file lives in ``bridge/_anywhere/`` so that the repository keeps its four folders at
the top and no fifth one. It stays light: ``anywhere_legacy_names.pth`` imports it in
every interpreter of an environment Anywhere is installed in.

Importing it installs the finder that keeps the old top-level names working for one
release (``anywhere._legacy_names``). The .pth file does that at start-up in an installed
environment; doing it here as well covers an editable install from a checkout, which has
no .pth file, so that an old name there gives the new module with a warning instead of
the checkout's folder loaded a second time.
"""

from . import _legacy_names

__version__ = "0.2.0"

_legacy_names.install()
