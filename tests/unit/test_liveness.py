"""Which errors are transient, and which timing settings are refused at start-up."""

from __future__ import annotations

import pytest
import redis.exceptions
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from pipeline.errors import AllRoutesFailed, ProviderRejected
from pipeline.liveness import is_transient, owner_worker
from pipeline.settings import Settings


class _SerializationFailure(Exception):
    sqlstate = "40001"


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("SELECT 1", {}, ConnectionError("server closed the connection")),
        InterfaceError("SELECT 1", {}, Exception("connection already closed")),
        DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True),
        DBAPIError("UPDATE x", {}, _SerializationFailure("could not serialize access")),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        AllRoutesFailed("every model failed"),
    ],
)
def test_infrastructure_blips_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, Exception("duplicate key")),
        DBAPIError("SELECT", {}, Exception("syntax error")),
        ProviderRejected("openai", "401 bad key"),
        KeyError("lead_id"),
    ],
)
def test_real_errors_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_owner_names_its_worker() -> None:
    assert owner_worker("host:12:abcd/task-1") == "host:12:abcd"


def test_defaults_are_coherent() -> None:
    Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"heartbeat_interval_s": 20}, "LEADPIPE_HEARTBEAT_TTL_S"),
        ({"visibility_timeout_s": 20}, "LEADPIPE_VISIBILITY_TIMEOUT_S"),
        ({"visibility_timeout_s": 200}, "LEADPIPE_RETRY_BACKOFF_MAX_S"),
        ({"sweep_after_s": 600}, "LEADPIPE_SWEEP_AFTER_S"),
        ({"lost_chain_after_s": 30}, "LEADPIPE_LOST_CHAIN_AFTER_S"),
        ({"stage_lease_s": 5}, "LEADPIPE_STAGE_LEASE_S"),
    ],
)
def test_timings_that_cannot_work_are_refused_with_the_variable_named(
    changes: dict[str, int], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(_env_file=None, **changes)  # type: ignore[call-arg]
