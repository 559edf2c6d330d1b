"""CLI-side composition: settings to engine and session factory."""

from __future__ import annotations

import functools

from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
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
