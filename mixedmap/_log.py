"""Library-safe structlog loggers: never configure structlog or logging globally.

Events go through a stdlib logger named ``mixedmap.<area>`` (silent by default thanks to a
NullHandler), so an application decides where they go; the CLI is the only application here
and may switch the rendering to JSON lines with :func:`render_json`.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

logging.getLogger("mixedmap").addHandler(logging.NullHandler())

_kv = structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)
_json = structlog.processors.JSONRenderer(sort_keys=True)
_renderer: list[Any] = [_kv]


def render_json(enabled: bool = True) -> None:
    """Render mixedmap's events as JSON objects instead of key=value (for the CLI)."""
    _renderer[0] = _json if enabled else _kv


def _render(logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
    return _renderer[0](logger, name, event)


def get_logger(name: str) -> Any:
    """A structlog BoundLogger over the stdlib logger ``name``, with a private chain."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.add_log_level, _render],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
