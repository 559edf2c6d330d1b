"""The CLI contract (DESIGN.md section 4) through real subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Campaign
from tests.cli import run_cli as _cli
from tests.cli import service_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(
    db_url: str, redis_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> dict[str, str]:
    return service_env(
        db_url,
        redis_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
    )


def test_validate_needs_no_service_and_reports_rows(tmp_path: Path) -> None:
    bare = dict(
        os.environ,
        LEADPIPE_REDIS_URL="redis://127.0.0.1:1/0",
        LEADPIPE_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
    )
    result = _cli(bare, "validate", str(ROOT / "samples" / "leads.csv"), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["batch_id"] is None and doc["accepted"] == 60 and doc["rejected"] == 5
    assert {"row": 9, "reason": "missing company name"} in doc["rejects"]
    empty = _cli(bare, "validate", str(ROOT / "samples" / "bad" / "empty.csv"))
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1
    assert "empty" in empty.stderr


def test_enqueue_sets_campaign_strategy_and_returns_the_contract(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    result = _cli(
        env,
        "enqueue",
        str(ROOT / "samples" / "leads.jsonl"),
        "--campaign",
        "cheap",
        "--strategy",
        "cost",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "batch_id",
        "accepted",
        "rejected",
        "rejects",
        "already_enqueued",
        "warnings",
    }
    assert (doc["accepted"], doc["rejected"]) == (9, 1) and doc["rejects"][0]["row"] == 5
    with session_factory() as session:
        assert session.scalars(select(Campaign.strategy)).one() == "cost"
    status = json.loads(_cli(env, "status", doc["batch_id"], "--json").stdout)
    assert status["leads"] == 9 and sum(status["by_status"].values()) == 9


def test_worker_refuses_an_invalid_routing_table(env: dict[str, str], tmp_path: Path) -> None:
    table = tmp_path / "routing.toml"
    table.write_text('[stages.judge]\nladder = ["openai:gpt-99"]\n')
    result = _cli({**env, "LEADPIPE_ROUTING_TABLE": str(table)}, "worker")
    assert result.returncode == 2
    assert "no price for model 'openai:gpt-99'" in result.stderr


def test_without_a_redis_url_the_embedded_redis_is_started(
    db_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    import redis

    from pipeline.settings import embedded_redis_port
    from workers.cli.embedded import port_open

    port = embedded_redis_port(tmp_path)
    if port_open("127.0.0.1", port):  # left over from an interrupted run of this test
        redis.Redis(port=port).shutdown(nosave=True)
    env = {k: v for k, v in os.environ.items() if k != "LEADPIPE_REDIS_URL"}
    env.update(LEADPIPE_DATABASE_URL=db_url, LEADPIPE_HOME=str(tmp_path))
    try:
        result = _cli(env, "enqueue", str(ROOT / "samples" / "leads.jsonl"), "--campaign", "emb")
        assert result.returncode == 0, result.stderr
        assert f"started the embedded Redis on 127.0.0.1:{port}" in result.stderr
        client = redis.Redis(port=port)
        assert sum(client.llen(k) for k in client.keys("classify*")) == 9  # the chains wait
        assert (tmp_path / "redis" / "appendonly.aof").exists()
        assert client.get("leadpipe:home") == str(tmp_path.resolve()).encode()
    finally:
        redis.Redis(port=port).shutdown(nosave=True)
