"""Library-safe structlog loggers: never configure structlog or logging globally.

Events go through a stdlib logger named ``mixedmap.<area>`` (silent by default thanks to a
NullHandler), so an application decides where they go; the CLI is the only application here.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

logging.getLogger("mixedmap").addHandler(logging.NullHandler())


def get_logger(name: str) -> Any:
    """A structlog BoundLogger over the stdlib logger ``name``, with a private chain."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
