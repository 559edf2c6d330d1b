"""One-line CLI errors for an unreachable or misconfigured service.

An operator who mistypes ``LEADPIPE_DATABASE_URL`` or starts a command while Redis is down needs
the setting to fix and the address that was tried, not a 500-line traceback: ``explain`` turns
the exceptions of SQLAlchemy, psycopg, redis-py, kombu, pydantic-settings and the routing table
into that line (passwords masked); anything it does not know is left to propagate (a bug).
``main`` prints it and exits 2; ``leadpipe --debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import kombu.exceptions
import pydantic
import redis.exceptions
import sqlalchemy.exc
from redis.connection import parse_url as parse_redis_url
from sqlalchemy.engine import make_url

from pipeline.errors import ConfigError
from pipeline.settings import Settings, get_settings

EXIT_SERVICE = 2
DB_SETTING = "LEADPIPE_DATABASE_URL"
REDIS_SETTING = "LEADPIPE_REDIS_URL"
ROUTING_SETTING = "LEADPIPE_ROUTING_TABLE"
DB_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
BROKER_ERRORS = (*REDIS_ERRORS, kombu.exceptions.OperationalError)


class ServiceUnavailable(Exception):
    """A preflight check failed; the message is already the one line to print."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or during, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _settings() -> Settings | None:
    try:
        return get_settings()
    except pydantic.ValidationError:
        return None


def url_problem(settings: Settings) -> str | None:
    """The line for a database or Redis URL that cannot even be parsed, else None."""
    db_url = settings.resolved_database_url()
    try:
        make_url(db_url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return f"{DB_SETTING} is not a database URL: {masked_url(db_url)!r}"
    redis_url = settings.resolved_redis_url()
    try:
        parse_redis_url(redis_url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"{REDIS_SETTING} is not a Redis URL: {masked_url(redis_url)!r} ({exc})"
    return None


def _settings_error(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    name = "LEADPIPE_" + "__".join(str(p) for p in first["loc"]).upper()
    return f"{name}: {first['msg']} (got {os.environ.get(name, '?')!r})"


def _routing_error(exc: OSError, settings: Settings | None) -> str | None:
    table = settings.routing_table if settings else None
    if table is None or exc.filename is None or Path(exc.filename) != table:
        return None
    return f"{ROUTING_SETTING}: cannot read {table}: {exc.strerror}"


def _missing_schema(exc: BaseException) -> bool:
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    text = str(exc.orig)
    return "no such table" in text or "UndefinedTable" in type(exc.orig).__name__


def explain(exc: BaseException) -> str | None:
    """The one line naming the setting and the address tried, or None for an unknown error."""
    chain = list(causes(exc))
    if isinstance(exc, ServiceUnavailable):
        return str(exc)
    for item in chain:
        if isinstance(item, pydantic.ValidationError):
            return _settings_error(item)
        if isinstance(item, ConfigError):
            return str(item)
    settings = _settings()
    if settings is None:
        return None
    for item in chain:
        if _missing_schema(item):
            url = masked_url(settings.resolved_database_url())
            return (
                f"database at {url} ({DB_SETTING}) has no leadpipe tables: run leadpipe db upgrade"
            )
        if isinstance(item, DB_ERRORS):
            url = masked_url(settings.resolved_database_url())
            return f"database unreachable at {url} ({DB_SETTING}): {_first_line(item)}"
        if isinstance(item, BROKER_ERRORS):
            url = masked_url(settings.resolved_redis_url())
            return f"Redis unreachable at {url} ({REDIS_SETTING}): {_first_line(item)}"
        if isinstance(item, OSError) and (line := _routing_error(item, settings)):
            return line
    return url_problem(settings)  # e.g. the ValueError of an unparsable URL


def print_error(line: str) -> None:
    """One line on stderr, never wrapped (a terminal's width must not split it)."""
    sys.stderr.write(f"error: {line}\n")


def require_url_shapes(settings: Settings) -> None:
    """Refuse a database or Redis URL that cannot be parsed, before anything is stored.

    Raises:
        ServiceUnavailable: naming the setting.
    """
    bad_url = url_problem(settings)
    if bad_url is not None:
        raise ServiceUnavailable(bad_url)


def require_services(settings: Settings) -> None:
    """Check that the database and Redis answer, before a long-running process starts.

    Celery's worker would otherwise retry its broker connection forever and look healthy.

    Raises:
        ServiceUnavailable: with the one line ``explain`` would print.
    """
    require_url_shapes(settings)
    from db.session import make_engine, ping

    engine = make_engine(settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            ping(conn)
    except DB_ERRORS as exc:
        raise ServiceUnavailable(explain(exc) or _first_line(exc)) from exc
    finally:
        engine.dispose()
    client = redis.Redis.from_url(settings.resolved_redis_url(), socket_connect_timeout=3)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        raise ServiceUnavailable(explain(exc) or _first_line(exc)) from exc
    finally:
        client.close()
