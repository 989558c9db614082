"""Lets the tests import the example plugin without installing it."""
