"""Engine and session factories; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

POOL_RECYCLE_S = 300
"""A pooled server connection older than this is replaced at its next checkout."""


def make_engine(url: str, *, pool_size: int | None = None, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so worker threads can share it.

    No ``pool_pre_ping``: it cost one round trip per checkout, i.e. per transaction (issue 15).
    A connection the server dropped fails its first statement instead; SQLAlchemy invalidates
    the pool and the error is transient (``pipeline.liveness.is_transient``), so the task is
    retried on a fresh connection. ``pool_recycle`` replaces connections before a server or
    proxy idle timeout closes them. ``pool_size``: at least the worker's threads, so a busy
    worker never opens and closes overflow connections per lead.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_S)
    if pool_size is not None:
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", pool_size)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (short transactions, R8)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(conn: Connection) -> None:
    """One round trip (``SELECT 1``); raises the driver error when the database does not answer."""
    conn.execute(text("SELECT 1"))
