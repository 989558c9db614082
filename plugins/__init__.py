"""Anywhere's built-in plugins. Each is registered through the ``anywhere.plugins``
entry-point group exactly as a third-party plugin is."""
