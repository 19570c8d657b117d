"""The bundled scenarios (``mixedmap run --list``): TOML files shipped as package data."""
