"""Scheduled campaigns against real PostgreSQL: each source's bytes run once, deadlines hold."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Batch, CampaignSource, Lead
from pipeline.campaigns.batches import claim_dispatch
from pipeline.campaigns.cron import CronError
from pipeline.campaigns.schedules import (
    CampaignError,
    add_campaign,
    due_schedules,
    list_campaigns,
    remove_campaign,
    run_campaign,
)

pytestmark = pytest.mark.integration
NOW = dt.datetime.now(dt.UTC)


def _drop(path: Path, *companies: str) -> Path:
    if path.suffix == ".jsonl":
        rows = "".join(
            json.dumps({"company": c, "website": f"https://{c}.test"}) + "\n" for c in companies
        )
        path.write_text(rows)
    else:
        path.write_text("company,website\n" + "".join(f"{c},https://{c}.test\n" for c in companies))
    past = time.time() - 86_400  # long settled, and older than NOW whenever the test runs
    os.utime(path, (past, past))
    return path


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_each_source_file_is_processed_once(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    _drop(tmp_path / "a.csv", "acme", "globex")
    with session_factory() as session, session.begin():
        add_campaign(session, name="nightly", source=tmp_path, cron="0 2 * * *", priority=3)

    first = run_campaign(session_factory, name="nightly", now=NOW)
    assert [(Path(o.path).name, o.accepted) for o in first.outcomes] == [("a.csv", 2)]
    assert [b.accepted for b in first.batches] == [2]
    with session_factory() as session, session.begin():  # what the caller dispatches
        claimed = claim_dispatch(session, first.batches[0].batch_id)
    assert claimed is not None and len(claimed.leads) == 2
    assert {p for _, p in claimed.leads} <= {2, 3}  # the campaign's priority

    again = run_campaign(session_factory, name="nightly", now=NOW)
    assert again.ran and again.outcomes == () and again.batches == []
    _drop(tmp_path / "copy.csv", "acme", "globex")  # the same bytes under another name
    _drop(tmp_path / "b.jsonl", "initech")
    (tmp_path / "broken.csv").write_bytes(b"\x00\x01binary")
    os.utime(tmp_path / "broken.csv", (time.time() - 86_400, time.time() - 86_400))
    third = run_campaign(session_factory, name="nightly", now=NOW)
    by_name = {Path(o.path).name: o for o in third.outcomes}
    assert set(by_name) == {"b.jsonl", "broken.csv"}  # copy.csv has a.csv's bytes
    assert by_name["b.jsonl"].accepted == 1 and by_name["broken.csv"].batch is None
    assert by_name["broken.csv"].error
    assert run_campaign(session_factory, name="nightly", now=NOW).outcomes == ()
    assert (_count(session_factory, Batch), _count(session_factory, Lead)) == (2, 3)
    assert _count(session_factory, CampaignSource) == 3
    with session_factory() as session:
        (listed,) = list_campaigns(session)
    assert (listed.sources_processed, listed.priority, listed.cron) == (3, 3, "0 2 * * *")
    assert listed.last_run_at == NOW


def test_schedule_validation_deadline_and_removal(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory() as session, session.begin():
        with pytest.raises(CronError):
            add_campaign(session, name="bad", source=tmp_path, cron="0 25 * * *")
        with pytest.raises(CampaignError, match="does not exist"):
            add_campaign(session, name="bad", source=tmp_path / "nope", cron="@daily")
        add_campaign(session, name="open", source=tmp_path, cron="@daily")
        add_campaign(
            session, name="ended", source=tmp_path, cron="@daily", deadline=NOW - dt.timedelta(1)
        )
        with pytest.raises(CampaignError, match="already scheduled"):
            add_campaign(session, name="open", source=tmp_path, cron="@hourly")
    with session_factory() as session:
        assert [c.name for c in due_schedules(session, now=NOW)] == ["open"]
    skipped = run_campaign(session_factory, name="ended", now=NOW)
    assert (skipped.ran, skipped.reason) == (False, "past its deadline")
    assert run_campaign(session_factory, name="ended", now=NOW, force=True).ran
    with session_factory() as session, session.begin():
        assert remove_campaign(session, "open") is True
        assert remove_campaign(session, "open") is False
    with session_factory() as session:
        assert [c.name for c in list_campaigns(session)] == ["ended"]
        assert due_schedules(session, now=NOW) == []
    with pytest.raises(CampaignError, match="no scheduled campaign"):
        run_campaign(session_factory, name="missing", now=NOW)


def test_a_drop_file_failing_half_way_stores_none_of_its_leads(
    session_factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file streams into the run's transaction; an error after some rows were inserted
    rolls back that file's savepoint only: its error is recorded, the other drop goes on."""
    from pipeline.campaigns import schedules
    from pipeline.ingest.leads import LeadFileError

    _drop(tmp_path / "a.csv", "acme", "globex")
    _drop(tmp_path / "b.csv", "initech")
    real = schedules.store_stream

    def failing_after_insert(session: Session, stream: Any, leads: Any, **kw: Any) -> Any:
        stored = real(session, stream, leads, **kw)
        if kw["source"] == str(tmp_path / "a.csv"):
            raise LeadFileError(f"{kw['source']}: malformed CSV near line 3")
        return stored

    monkeypatch.setattr(schedules, "store_stream", failing_after_insert)
    with session_factory() as session, session.begin():
        add_campaign(session, name="drops", source=tmp_path, cron="@daily")
    run = run_campaign(session_factory, name="drops", now=NOW)
    by_name = {Path(o.path).name: o for o in run.outcomes}
    assert by_name["a.csv"].batch is None and "malformed CSV" in str(by_name["a.csv"].error)
    assert by_name["b.csv"].accepted == 1 and len(run.batches) == 1
    assert (_count(session_factory, Batch), _count(session_factory, Lead)) == (1, 1)
    assert _count(session_factory, CampaignSource) == 2  # a.csv is not retried until it changes
