import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from db import models  # noqa: F401  (registers the tables)
from db.base import Base

pytestmark = pytest.mark.integration


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_cost_views_exist(engine: Engine) -> None:
    views = set(inspect(engine).get_view_names())
    assert {"campaign_cost_summary", "lead_cost_summary", "stage_cost_summary"} <= views
