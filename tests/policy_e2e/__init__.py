"""End-to-end policy tests: a real Synapse with the policy module, the real bridge."""
