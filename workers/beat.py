"""A beat scheduler that reads scheduled campaigns from the database while it runs.

``leadpipe beat`` starts celery beat with ``-S workers.beat:DatabaseScheduler``. Every
``sync_every`` seconds the scheduler reloads the enabled campaigns and merges them with the
static ``BEAT_SCHEDULE``, so ``leadpipe campaigns add`` takes effect without a restart. Run one
beat per deployment: two would send every campaign twice (harmless, since a run skips sources
it has processed, but wasteful).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import crontab
from sqlalchemy.exc import SQLAlchemyError

from db.base import utcnow
from pipeline.campaigns.cron import parse_cron
from pipeline.campaigns.schedules import ScheduledCampaign, due_schedules
from workers.context import session_factory
from workers.queues import Queue
from workers.schedule import BEAT_SCHEDULE

log = structlog.get_logger(__name__)
PREFIX = "campaign:"


def campaign_entry(campaign: ScheduledCampaign) -> dict[str, Any]:
    """The beat entry (as a dict) that runs one campaign on its cron."""
    spec = parse_cron(campaign.cron or "")
    entry: dict[str, Any] = {
        "task": "campaigns.run",
        "schedule": crontab(
            minute=spec.minute,
            hour=spec.hour,
            day_of_month=spec.day_of_month,
            month_of_year=spec.month_of_year,
            day_of_week=spec.day_of_week,
        ),
        "kwargs": {"name": campaign.name},
        "options": {"queue": Queue.OPS.value},
    }
    # A beat restart catches up a run it missed; a new campaign counts from when it is loaded.
    if campaign.last_run_at is not None:
        entry["last_run_at"] = campaign.last_run_at
    return entry


class DatabaseScheduler(Scheduler):
    sync_every = 5  # seconds between reloads from the database
    max_interval = 5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loaded_at: float | None = None
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self._reload()

    def get_schedule(self) -> dict[str, ScheduleEntry]:
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= self.sync_every:
            self._reload()
        return Scheduler.get_schedule(self)  # the base class's dict

    # The base class bound its own getter into the property; rebind it to the reloading one.
    schedule = property(get_schedule, Scheduler.set_schedule)

    def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            with session_factory()() as session:
                campaigns = due_schedules(session, now=utcnow())
        except SQLAlchemyError as exc:  # keep the last schedule while the database is away
            log.warning("beat_reload_failed", error=str(exc))
            return
        wanted = {**self.app.conf.beat_schedule, **BEAT_SCHEDULE}
        wanted.update({PREFIX + c.name: campaign_entry(c) for c in campaigns})
        self._merge(wanted)

    def _merge(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Replace changed entries (so beat re-plans them), keep unchanged ones and their times."""
        current = Scheduler.get_schedule(self)
        for name in set(current) - set(wanted):
            del current[name]
            log.info("beat_entry_removed", entry=name)
        for name, spec in wanted.items():
            entry = self.Entry(**dict(spec, name=name, app=self.app))
            old = current.get(name)
            if old is None or old != entry:
                current[name] = entry
                log.info("beat_entry_loaded", entry=name, schedule=str(entry.schedule))
