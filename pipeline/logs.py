"""structlog set-up: key-value lines for people, JSON lines for machines; secrets redacted."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|password|secret|token)$", re.I)
_SECRET_VALUES = re.compile(r"(sk-[A-Za-z0-9_-]{8,}|Bearer\s+\S+)")


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secret-looking keys and mask secret-looking values in every log event."""
    for key in list(event):
        if _SECRET_KEYS.search(key) and not key.endswith("_tokens"):
            event[key] = "[redacted]"
        elif isinstance(event[key], str):
            event[key] = _SECRET_VALUES.sub("[redacted]", event[key])
    return event


def configure_logging(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    """Configure structlog once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
