"""CLI-side composition: settings to engine and session factory."""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.migrate import revisions, upgrade
from db.session import make_engine, make_session_factory
from pipeline.settings import get_settings


@functools.cache
def session_factory(*, migrate: bool = False) -> sessionmaker[Session]:
    """A session factory for the configured database (migrated to head when asked)."""
    settings = get_settings()
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        settings.resolved_home().mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(url)
    return make_session_factory(make_engine(url))


class NoData(Exception):
    """A read-only command found nothing to read (``code`` is its exit code)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def read_session_factory() -> sessionmaker[Session]:
    """For read-only commands: never migrates, never creates a database file.

    Raises:
        NoData: a fresh home with no database yet (code 0), or a schema older than this
            leadpipe (code 1: run ``leadpipe db upgrade``).
    """
    url = get_settings().resolved_database_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise NoData(f"no data yet: {url.removeprefix('sqlite:///')} does not exist", 0)
    current, head = revisions(url)
    if current is None:
        raise NoData("no data yet: the database has no leadpipe tables", 0)
    if current != head:
        raise NoData(
            f"the database is at revision {current}, this leadpipe needs {head}: "
            "run leadpipe db upgrade",
            1,
        )
    return session_factory()
