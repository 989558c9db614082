"""The real-Synapse harness, for tests: the dev stack's (:mod:`bridge.devsynapse`)."""

from bridge.devsynapse import Synapse, SynapseError, free_port

__all__ = ["Synapse", "SynapseError", "free_port"]
