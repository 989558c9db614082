"""The real-Synapse harness, for tests: the dev stack's (:mod:`anywhere.bridge.devsynapse`)."""

from anywhere.bridge.devsynapse import Synapse, SynapseError, free_port

__all__ = ["Synapse", "SynapseError", "free_port"]
