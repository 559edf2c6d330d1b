"""Shared fixtures: real PostgreSQL and Redis (from scripts/services.sh), the simulator."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from db.base import Base
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from pipeline.deps import Deps
from pipeline.llm.providers import build_providers, make_http_client
from pipeline.llm.routing import RoutingTable, load_routing_table
from pipeline.web.fetch import WebPolicy
from simulator import SimulatorConfig, SimulatorServer

DB_URL = os.environ.get("LEADPIPE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("LEADPIPE_TEST_REDIS_URL")


def _require(value: str | None, name: str) -> str:
    if not value:
        pytest.fail(f"{name} is not set: run `make test` (it starts PostgreSQL and Redis)")
    return value


@pytest.fixture(scope="session")
def db_url() -> str:
    return _require(DB_URL, "LEADPIPE_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _require(REDIS_URL, "LEADPIPE_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    # The deployment id outlives a test: workers cache it (issue 13's identity check).
    kept = {"deployment"}
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in kept)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return make_session_factory(engine)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def routing() -> RoutingTable:
    return load_routing_table()


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(config=SimulatorConfig(latency_scale=0.0, seed=7))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def deps(
    session_factory: sessionmaker[Session],
    simulator: SimulatorServer,
    routing: RoutingTable,
    redis_client: redis.Redis,
) -> Iterator[Deps]:
    http = make_http_client(timeout_s=5.0)
    yield Deps(
        session_factory=session_factory,
        providers=build_providers({}, simulator_url=simulator.url, http=http),
        routing=routing,
        web_policy=WebPolicy(),
        redis=redis_client,
    )
    http.close()
