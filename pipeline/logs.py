"""structlog set-up: key-value lines for people, JSON lines for machines; secrets redacted.

With ``LEADPIPE_LOG_JSON=1`` every event is one JSON object on one line, carrying what the task
base binds (``task``, ``task_id``, ``stage``, ``lead_id``, ``run_id``). Redaction runs after
tracebacks are formatted, so a key inside an exception message is masked too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote

import structlog

_SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|password|secret|token)$", re.I)
# Provider key shapes (OpenAI/DeepSeek/OpenRouter ``sk-...``, Anthropic ``sk-ant-...``,
# Cerebras ``csk-...``) and bearer/basic credentials.
_SECRET_VALUES = re.compile(r"(c?sk-[A-Za-z0-9_-]{8,}|(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+)")
REDACTED = "[redacted]"
MIN_SECRET_LEN = 4
"""Shorter configured secrets are not masked by value (they would mask ordinary words)."""
_registered: dict[str, None] = {}  # insertion-ordered set of configured secret values


def register_secrets(values: Iterable[str]) -> None:
    """Mask these exact values (and their URL-encoded forms) from now on, whatever their shape.

    The shape patterns catch ``sk-...`` keys; a key without that shape, a webhook URL or a
    password is only caught by value, so settings register every ``SecretStr`` they hold.
    """
    for value in values:
        if len(value) >= MIN_SECRET_LEN:
            _registered.update(dict.fromkeys((value, quote(value, safe=""), quote(value))))


def mask_secrets(text: str) -> str:
    """``text`` with every configured secret and secret-looking token replaced by ``[redacted]``."""
    for value in sorted(_registered, key=len, reverse=True):  # a longer value may contain one
        if value in text:
            text = text.replace(value, REDACTED)
    return _SECRET_VALUES.sub(REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_secrets(str(value))  # exceptions, Decimals, paths: rendered as text anyway


def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key)) and not key.endswith("_tokens")


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secret-looking keys and mask secret-looking values in every log event."""
    for key in list(event):
        event[key] = REDACTED if _secret_key(key) else _scrub(event[key])
    return event


_process_level = logging.INFO


def set_process_level(name: str) -> None:
    """The level this process's later :func:`configure_logging` calls use by default
    (``leadpipe worker --loglevel``: it applies to leadpipe's own lines, not only Celery's).

    Raises:
        ValueError: not a logging level name.
    """
    global _process_level
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}")
    _process_level = level


def configure_logging(
    *, json_lines: bool = False, level: int | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for this process (again: later calls replace earlier ones).

    Args:
        json_lines: one JSON object per line instead of key=value text.
        level: the lowest level written (default: the process's, INFO unless
            :func:`set_process_level` said otherwise).
        stream: where lines go (default: standard error, so a CLI's JSON on standard output
            stays one clean document).
    """
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
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            _process_level if level is None else level
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        # Not cached: module-level loggers must follow a later configure_logging() call.
        cache_logger_on_first_use=False,
    )
