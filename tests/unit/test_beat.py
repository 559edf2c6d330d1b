"""The database scheduler's merge: changed entries are replaced, unchanged ones keep their times."""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab

from pipeline.campaigns.schedules import ScheduledCampaign
from workers.app import app
from workers.beat import DatabaseScheduler, campaign_entry

LAST = dt.datetime(2025, 3, 3, 2, 0, tzinfo=dt.UTC)


def _campaign(cron: str, last_run_at: dt.datetime | None = None) -> ScheduledCampaign:
    return ScheduledCampaign(
        id=1,
        name="nightly",
        source="/drop",
        cron=cron,
        priority=5,
        enabled=True,
        deadline=None,
        last_run_at=last_run_at,
    )


def test_campaign_entry_runs_the_campaign_task_on_its_cron() -> None:
    entry = campaign_entry(_campaign("*/5 9-17 * * mon-fri", LAST))
    assert entry["task"] == "campaigns.run"
    assert entry["kwargs"] == {"name": "nightly"}
    assert entry["options"] == {"queue": "ops"}
    assert entry["schedule"] == crontab("*/5", "9-17", day_of_week="mon-fri")
    assert entry["last_run_at"] == LAST
    assert "last_run_at" not in campaign_entry(_campaign("@daily"))


def test_merge_keeps_unchanged_entries_and_replaces_changed_ones() -> None:
    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler._merge({"campaign:nightly": campaign_entry(_campaign("0 2 * * *", LAST))})
    first = scheduler.get_schedule()["campaign:nightly"]
    assert first.last_run_at == LAST
    scheduler._merge({"campaign:nightly": campaign_entry(_campaign("0 2 * * *"))})
    assert scheduler.get_schedule()["campaign:nightly"] is first
    scheduler._merge({"campaign:nightly": campaign_entry(_campaign("* * * * *"))})
    changed = scheduler.get_schedule()["campaign:nightly"]
    assert changed is not first and changed.schedule == crontab()
    scheduler._merge({})
    assert "campaign:nightly" not in scheduler.get_schedule()
