"""Scenario files: describe machines, XIP devices, processes and their steps in TOML and run
them on one arch or on every installed arch side by side (``mixedmap run``)."""
