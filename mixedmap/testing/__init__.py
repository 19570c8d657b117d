"""Helpers for plugin authors and for mixedmap's own tests."""
