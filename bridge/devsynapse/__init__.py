"""A real, local Synapse for the dev stack (``anywhere dev``), which owns it; the test
fixtures (``anywhere.bridge.testing``) build on it. See :mod:`anywhere.bridge.devsynapse.server`."""

from .config import SynapseError
from .server import Synapse, free_port

__all__ = ["Synapse", "SynapseError", "free_port"]
