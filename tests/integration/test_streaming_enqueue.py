"""Streaming enqueue (issue 15): chunked inserts, bulk-built chain messages, the outbox kept.

Real PostgreSQL and Redis, the real ``leadpipe`` command in a subprocess. The file is larger than
one INSERT chunk (2,000 rows) and one publish pipeline (1,000 leads), and has bad rows and
duplicates spread through it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Batch, Lead
from pipeline.campaigns.batches import INSERT_CHUNK
from tests.cli import run_cli as _cli
from tests.cli import service_env
from workers.bulk import PUBLISH_BATCH

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ROWS = 5_000
BAD_EVERY = 499  # a row without company, website or email
DUPLICATE_EVERY = 997  # the same email as the row before


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


@pytest.fixture
def lead_file(tmp_path: Path) -> tuple[Path, set[int], set[int]]:
    """A CSV of ROWS data rows; returns it with the line numbers of bad rows and duplicates."""
    lines = ["Company,Email,Employees,Industry,Technologies"]
    bad: set[int] = set()
    duplicates: set[int] = set()
    for i in range(ROWS):
        line_number = i + 2
        if i and i % BAD_EVERY == 0:
            lines.append(",,12,retail,")
            bad.add(line_number)
        elif i and i % DUPLICATE_EVERY == 0:
            lines.append(f"Again {i},lead{i - 1}@co{i - 1}.example,12,retail,")
            duplicates.add(line_number)
        else:
            size, tech = (5000, "SAP") if i % 10 == 0 else (20, "")
            lines.append(f"Company {i},lead{i}@co{i}.example,{size},finance,{tech}")
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, bad, duplicates


def _queued(client: redis.Redis) -> list[dict[str, object]]:
    """Every message waiting in a classify queue (any priority), decoded."""
    found = []
    for key in client.keys("classify*"):
        if client.type(key) != b"list":
            continue
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            body = json.loads(base64.b64decode(message["body"]))
            found.append({"key": key, "message": message, "body": body})
    return found


def _lead_ids(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return list(session.scalars(select(Lead.id).order_by(Lead.id)))


def test_a_large_file_is_stored_in_chunks_and_every_chain_sent_once(
    env: dict[str, str],
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis,
    lead_file: tuple[Path, set[int], set[int]],
) -> None:
    path, bad, duplicates = lead_file
    assert ROWS > 2 * INSERT_CHUNK and ROWS > 2 * PUBLISH_BATCH
    done = _cli(env, "enqueue", str(path), "--campaign", "stream", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    good = ROWS - len(bad) - len(duplicates)
    assert doc["accepted"] == good and doc["rejected"] == len(bad) + len(duplicates)
    rejects = {r["row"]: r["reason"] for r in doc["rejects"]}
    assert len(rejects) == len(doc["rejects"])  # one line per bad row
    assert {row for row, why in rejects.items() if why == "missing company name"} == bad
    assert {row for row, why in rejects.items() if why.startswith("duplicate of row")} == duplicates
    assert [r["row"] for r in doc["rejects"]] == sorted(rejects)

    with session_factory() as session:
        (batch,) = session.scalars(select(Batch))
        assert batch.dispatched_at is not None and batch.accepted == good
        assert batch.rejected == len(rejects) and len(batch.rejects) == len(rejects)
        rows = session.scalar(select(func.count()).select_from(Lead))
        numbers = set(session.scalars(select(Lead.row_number)))
    assert rows == good and not numbers & (bad | duplicates)

    queued = _queued(redis_client)
    sent = Counter(int(q["body"][1]["lead_id"]) for q in queued)  # type: ignore[index]
    assert sorted(sent) == _lead_ids(session_factory) and set(sent.values()) == {1}
    # Enterprise-looking leads (5,000 employees, SAP) go one step ahead of priority 5.
    priorities = Counter(q["message"]["properties"]["priority"] for q in queued)  # type: ignore[index]
    assert set(priorities) == {4, 5} and priorities[4] >= ROWS // 10 - len(bad) - len(duplicates)
    chains = {len(q["body"][2]["chain"]) for q in queued}  # type: ignore[index]
    assert chains == {5}  # score .. judge ride along, as chain.apply_async sends them

    again = _cli(env, "enqueue", str(path), "--campaign", "stream", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"already_enqueued": False} == doc | {
        "already_enqueued": False
    }
    assert json.loads(again.stdout)["already_enqueued"] is True
    assert len(_queued(redis_client)) == good and len(_lead_ids(session_factory)) == good


def test_a_streamed_batch_stored_while_redis_is_down_is_sent_once_by_the_sweep(
    env: dict[str, str],
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis,
    lead_file: tuple[Path, set[int], set[int]],
) -> None:
    path, bad, duplicates = lead_file
    good = ROWS - len(bad) - len(duplicates)
    down = {**env, "LEADPIPE_REDIS_URL": "redis://127.0.0.1:1/0"}
    failed = _cli(down, "enqueue", str(path), "--campaign", "swept")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1, failed.stderr
    with session_factory() as session:
        (stored,) = session.scalars(select(Batch))
        assert stored.dispatched_at is None and stored.accepted == good
    hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with session_factory() as session, session.begin():
        session.execute(update(Batch).values(created_at=hours_ago))
        session.execute(update(Lead).values(created_at=hours_ago))
    first = _cli(env, "sweep")
    assert first.returncode == 0, first.stderr
    assert "dispatched 1 stored batch(es)" in first.stdout
    assert "re-dispatched 0 stalled lead(s)" in first.stdout
    sent = Counter(int(q["body"][1]["lead_id"]) for q in _queued(redis_client))  # type: ignore[index]
    assert sorted(sent) == _lead_ids(session_factory) and set(sent.values()) == {1}
    second = _cli(env, "sweep")
    assert "stored batch" not in second.stdout
    assert len(_queued(redis_client)) == good


def test_every_row_bad_stores_nothing(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("Company,Email\n" + ",x@\n" * 3000)
    done = _cli(env, "enqueue", str(path), "--campaign", "bad", "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["accepted"] == 0 and doc["batch_id"] is None and doc["rejected"] == 3000
    assert _lead_ids(session_factory) == []


CONFORMANCE = """
import base64, json, sys
import redis
from workers.app import app
from workers.bulk import ChainSender
from workers.canvas import STAGE_TASKS

client = redis.Redis.from_url(sys.argv[1])
def take():
    (key,) = client.keys("classify*4")
    message = json.loads(client.rpop(key))
    message["body"] = json.loads(base64.b64decode(message["body"]))
    ids = (message["headers"]["id"], message["headers"]["root_id"],
           message["properties"]["correlation_id"])
    message["headers"]["id"] = message["headers"]["root_id"] = "ID"
    message["properties"]["correlation_id"] = message["properties"]["delivery_tag"] = "ID"
    return message, len(set(ids))
with app.producer_or_acquire() as producer:
    first, *rest = (t.si(lead_id=42, run_id="run-1").set(priority=4) for t in STAGE_TASKS)
    first.apply_async(producer=producer, chain=rest[::-1])
celery_message, _ = take()
ChainSender(STAGE_TASKS, "run-1").send([(42, 4)])
ours, distinct = take()
print(json.dumps({"same": ours == celery_message, "distinct_ids": distinct,
                  "headers": sorted(ours["headers"])}))
"""


def test_a_bulk_built_message_is_the_one_celery_publishes(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CONFORMANCE, env["LEADPIPE_REDIS_URL"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["same"] is True and doc["distinct_ids"] == 1
    assert "leadpipe_deployment" in doc["headers"]  # before_task_publish receivers ran


BROKER_CHECK = """
import json, sys
import redis
from workers.broker import leads_in_broker
from workers.canvas import dispatch
client = redis.Redis.from_url(sys.argv[1])
dispatch([(11, 5), (12, 4), (13, 0)], "run-1")
print(json.dumps(sorted(leads_in_broker(client))))
"""


def test_the_recovery_loop_sees_chains_waiting_at_every_priority(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    # A backlog at priority 5 (the default) must count as waiting, or the recovery loop sends
    # every idle lead of a large batch again each minute (it read "classify:5", kombu writes
    # "classify\\x06\\x165").
    result = subprocess.run(
        [sys.executable, "-c", BROKER_CHECK, env["LEADPIPE_REDIS_URL"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [11, 12, 13]
