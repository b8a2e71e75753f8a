"""Structured logging: JSON lines for production, key=value for humans.

Every program calls `setup` once; modules take a logger with `get(__name__)`
and log events with the object's name as a field (`claim=`, `service=`), so
`grep` and log pipelines find the object a line is about.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def setup(fmt: str = "json", level: str = "info") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> Any:
    """A bound logger tagged with the module it logs for."""
    # A lazy proxy: modules take their logger at import time, before setup()
    # has configured the level and format; the proxy reads the configuration
    # when it first logs.
    return structlog.get_logger(module=name)
