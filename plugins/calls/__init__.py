"""Calls: Matrix 1:1 VoIP (``m.call.*``) answered and placed by the bridge with aiortc —
an echo and quality test, voice memos and room audio conferences (docs/calls.md)."""

from .plugin import CallsPlugin

plugin = CallsPlugin()

__all__ = ["CallsPlugin", "plugin"]
