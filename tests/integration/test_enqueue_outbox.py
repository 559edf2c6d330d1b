"""Enqueue as an outbox: a batch stored while Redis is down is dispatched exactly once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Batch, Lead
from pipeline.campaigns.batches import claim_dispatch
from pipeline.campaigns.sweep import find_stalled, find_undispatched
from pipeline.deps import Deps
from tests.cli import run_cli as _cli
from tests.cli import service_env
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEADS = str(ROOT / "samples" / "leads.jsonl")  # 9 good leads
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)


def _queued(client: redis.Redis) -> int:
    return sum(int(client.llen(k)) for k in client.keys("classify*"))


@pytest.fixture
def env(
    db_url: str, redis_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> dict[str, str]:
    return service_env(
        db_url,
        redis_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
        LEADPIPE_SIMULATOR_URL="http://127.0.0.1:9/v1",  # providers set: no readiness warning
    )


def _batches(factory: sessionmaker[Session]) -> list[Batch]:
    with factory() as session:
        return list(session.scalars(select(Batch)))


def test_enqueue_with_redis_down_then_again_dispatches_one_batch_once(
    env: dict[str, str], session_factory: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    down = {**env, "LEADPIPE_REDIS_URL": "redis://127.0.0.1:1/0"}
    failed = _cli(down, "enqueue", LEADS, "--campaign", "outbox")
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert "LEADPIPE_REDIS_URL" in failed.stderr and "127.0.0.1:1" in failed.stderr
    (stored,) = _batches(session_factory)
    assert stored.dispatched_at is None and stored.id in failed.stderr

    again = _cli(env, "enqueue", LEADS, "--campaign", "outbox", "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["batch_id"] == stored.id and doc["already_enqueued"] is True
    assert _queued(redis_client) == 9
    (finished,) = _batches(session_factory)
    assert finished.dispatched_at is not None

    third = _cli(env, "enqueue", LEADS, "--campaign", "outbox")
    assert third.returncode == 0, third.stderr
    assert f"already enqueued as batch {stored.id}" in third.stdout
    assert _queued(redis_client) == 9 and len(_batches(session_factory)) == 1

    forced = _cli(env, "enqueue", LEADS, "--campaign", "outbox", "--again", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["already_enqueued"] is False
    assert _queued(redis_client) == 18 and len(_batches(session_factory)) == 2


def test_the_sweep_finishes_a_stored_batch_once_and_never_as_stalled_leads(
    env: dict[str, str], session_factory: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    down = {**env, "LEADPIPE_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert _cli(down, "enqueue", LEADS, "--campaign", "swept").returncode == 2
    hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)  # older than every threshold
    with session_factory() as session, session.begin():
        session.execute(update(Batch).values(created_at=hours_ago))
        session.execute(update(Lead).values(created_at=hours_ago))
    first = _cli(env, "sweep")
    assert first.returncode == 0, first.stderr
    assert "dispatched 1 stored batch(es)" in first.stdout
    assert "re-dispatched 0 stalled lead(s)" in first.stdout  # not sent a second time
    assert _queued(redis_client) == 9
    second = _cli(env, "sweep")
    assert "stored batch" not in second.stdout and "re-dispatched 0" in second.stdout
    assert _queued(redis_client) == 9


def test_claim_dispatch_is_exactly_once_and_a_failed_send_leaves_it_pending(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW], priority=3, dispatched=False)
    with deps.session_scope() as session:
        assert find_undispatched(session, older_than=LATER) == [batch.batch_id]
        assert find_stalled(session, older_than=LATER) == []  # the outbox's, not the sweep's
    with pytest.raises(ConnectionError), deps.session_scope() as session:
        assert claim_dispatch(session, batch.batch_id) is not None
        raise ConnectionError("broker down while sending")  # rolls the mark back
    with deps.session_scope() as session:
        claimed = claim_dispatch(session, batch.batch_id)
        assert claimed is not None and sorted(claimed.leads) == sorted(batch.leads)
    with deps.session_scope() as session:
        assert claim_dispatch(session, batch.batch_id) is None
        assert find_undispatched(session, older_than=LATER) == []
        assert len(find_stalled(session, older_than=LATER)) == 2
