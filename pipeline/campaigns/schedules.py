"""Scheduled campaigns: a cron schedule over a source file or a drop directory.

A campaign's source is a lead file or a directory; a directory means every ``*.csv`` and
``*.jsonl`` file in it (not hidden ones). Each run processes only sources whose bytes (SHA-256)
the campaign has not processed before, so a nightly run over a directory picks up just the new
drops. A file that cannot be parsed is recorded too (with its error) and is not retried until
its content changes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from db.base import utcnow
from db.models import Campaign, CampaignSource
from db.session import session_scope
from pipeline.campaigns import store
from pipeline.campaigns.batches import StoredBatch, get_or_create_campaign, hash_file, store_stream
from pipeline.campaigns.cron import parse_cron
from pipeline.ingest.leads import LeadFileError, open_lead_file

LEAD_SUFFIXES: Final = (".csv", ".jsonl")
# A file younger than this may still be being copied into the drop directory.
SETTLE_S: Final = 1.0
_ISO_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_SHORT_DURATION = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class CampaignError(Exception):
    """A campaign request that cannot be honoured; ``str(exc)`` is one line for the user."""


@dataclass(frozen=True, slots=True)
class ScheduledCampaign:
    """One campaign as the CLI lists it and beat schedules it."""

    id: int
    name: str
    source: str | None
    cron: str | None
    priority: int
    enabled: bool
    deadline: dt.datetime | None
    last_run_at: dt.datetime | None
    sources_processed: int = 0


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """What one run did with one source file."""

    path: str
    sha256: str
    batch: StoredBatch | None
    accepted: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignRun:
    """The new sources one run processed; ``batches`` are what the caller dispatches."""

    campaign: str
    ran: bool
    outcomes: tuple[SourceOutcome, ...] = ()
    reason: str | None = None

    @property
    def batches(self) -> list[StoredBatch]:
        """The batches created by this run, one per new source with good rows."""
        return [o.batch for o in self.outcomes if o.batch is not None]


def parse_deadline(text: str, *, now: dt.datetime) -> dt.datetime:
    """Read ``--deadline``: an ISO-8601 datetime or a duration from ``now``.

    Args:
        text: ``2025-07-01T00:00:00Z`` (naive means UTC), ``P30D``, ``PT12H``, ``P1W``,
            or the short forms ``90m``, ``12h``, ``30d``, ``2w``.
        now: the moment durations count from (aware).

    Returns:
        An aware datetime.

    Raises:
        CampaignError: neither a datetime nor a positive duration.
    """
    value = text.strip()
    match = _ISO_DURATION.match(value.upper()) if value.upper().startswith("P") else None
    if match and any(match.groupdict().values()):
        parts = {k: int(v) for k, v in match.groupdict().items() if v}
        delta = dt.timedelta(**parts)
    elif short := _SHORT_DURATION.match(value.lower()):
        delta = dt.timedelta(**{_UNITS[short["unit"]]: int(short["n"])})
    else:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CampaignError(
                f"deadline {text!r} is neither an ISO-8601 datetime "
                "(2025-07-01T00:00:00Z) nor a duration (P30D, PT12H, 12h, 30d)"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if delta <= dt.timedelta(0):
        raise CampaignError(f"deadline {text!r} must be a positive duration")
    return now + delta


def discover_sources(
    source: Path, *, now: float | None = None, settle_s: float = SETTLE_S
) -> list[Path]:
    """The lead files a source names, in a stable order.

    Args:
        source: a file (taken as is) or a directory (its ``*.csv``/``*.jsonl`` files, not
            hidden ones, not recursive).
        now: the current epoch time (defaults to the clock).
        settle_s: directory files modified more recently than this are left for the next run,
            since they may still be being written.

    Returns:
        Existing files; an empty list when the source does not exist (yet).
    """
    if source.is_file():
        return [source]
    if not source.is_dir():
        return []
    clock = time.time() if now is None else now
    found = []
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in LEAD_SUFFIXES:
            continue
        if path.is_file() and clock - path.stat().st_mtime >= settle_s:
            found.append(path)
    return found


def add_campaign(
    session: Session,
    *,
    name: str,
    source: Path,
    cron: str,
    priority: int = 5,
    deadline: dt.datetime | None = None,
) -> ScheduledCampaign:
    """Schedule a campaign (an existing unscheduled campaign of that name gets the schedule).

    Raises:
        CronError: the cron expression is unusable.
        CampaignError: the source does not exist, or the campaign is already scheduled.
    """
    spec = parse_cron(cron)
    if not source.exists():
        raise CampaignError(f"source {source} does not exist")
    existing = store.campaign_by_name(session, name)
    if existing is not None and existing.cron:
        raise CampaignError(f"campaign {name!r} is already scheduled; remove it first")
    camp = get_or_create_campaign(session, name, priority=priority)
    camp.source = str(source.resolve())
    camp.cron = spec.expression
    camp.priority = priority
    camp.deadline = deadline
    camp.enabled = True
    camp.last_run_at = None  # beat counts the first run from when it loads the schedule
    session.flush()
    return _view(camp, 0)


def remove_campaign(session: Session, name: str) -> bool:
    """Unschedule a campaign (its batches, leads and history stay); False if not scheduled."""
    camp = store.campaign_by_name(session, name)
    if camp is None or camp.cron is None:
        return False
    camp.cron = None
    camp.enabled = False
    return True


def list_campaigns(session: Session) -> list[ScheduledCampaign]:
    """Every scheduled campaign, by name, with how many sources each has processed."""
    counts = store.sources_per_campaign(session)
    return [_view(c, counts.get(c.id, 0)) for c in store.scheduled_campaigns(session)]


def source_errors(session: Session) -> dict[str, list[dict[str, str]]]:
    """Campaign name -> the drop files that could not be used, with why (newest first)."""
    found: dict[str, list[dict[str, str]]] = {}
    for name, path, error in store.source_errors(session):
        found.setdefault(name, []).append({"path": path, "error": error or ""})
    return found


def due_schedules(session: Session, *, now: dt.datetime) -> list[ScheduledCampaign]:
    """The campaigns beat should schedule: enabled, with a cron, not past their deadline."""
    return [
        c
        for c in list_campaigns(session)
        if c.enabled and c.cron and (c.deadline is None or _aware(c.deadline) > now)
    ]


def run_campaign(
    factory: sessionmaker[Session],
    *,
    name: str,
    now: dt.datetime | None = None,
    force: bool = False,
    settle_s: float = SETTLE_S,
) -> CampaignRun:
    """Process a campaign's new sources into batches (one short transaction).

    The campaign row is locked for the run, so a beat tick and a ``run-now`` never process the
    same file twice. The caller dispatches ``run.batches`` after this returns (committed).

    Args:
        factory: session factory of the campaign database.
        name: the campaign.
        now: the run's time (defaults to the clock).
        force: run even when disabled or past the deadline (an operator's ``run-now``).
        settle_s: see :func:`discover_sources`.

    Raises:
        CampaignError: no such campaign, or it has no source.
    """
    moment = now or utcnow()
    with session_scope(factory) as session:
        camp = store.campaign_by_name(session, name, lock=True)
        if camp is None or not camp.source:
            raise CampaignError(f"no scheduled campaign {name!r}")
        if not force and not camp.enabled:
            return CampaignRun(campaign=name, ran=False, reason="disabled")
        if not force and camp.deadline is not None and _aware(camp.deadline) <= moment:
            return CampaignRun(campaign=name, ran=False, reason="past its deadline")
        outcomes = tuple(
            outcome
            for path in discover_sources(
                Path(camp.source), now=moment.timestamp(), settle_s=settle_s
            )
            if (outcome := _process_source(session, camp, path)) is not None
        )
        camp.last_run_at = moment
    return CampaignRun(campaign=name, ran=True, outcomes=outcomes)


def _process_source(session: Session, camp: Campaign, path: Path) -> SourceOutcome | None:
    """Turn one unprocessed file into a batch; None when its bytes were processed before."""
    try:
        sha = hash_file(path)  # read in chunks: a nightly drop can be large
    except OSError:
        return None  # vanished or unreadable between listing and reading: next run retries
    if store.source_seen(session, camp.id, sha):
        return None
    outcome = _batch_from(session, camp, path, sha)
    session.add(
        CampaignSource(
            campaign_id=camp.id,
            path=str(path),
            sha256=sha,
            batch_id=outcome.batch.batch_id if outcome.batch else None,
            error=outcome.error,
        )
    )
    session.flush()
    return outcome


def _batch_from(session: Session, camp: Campaign, path: Path, sha: str) -> SourceOutcome:
    """Store the file's good rows as one batch while it streams in (bounded memory, as
    ``enqueue``); a file error, even half-way, stores no lead of it (a savepoint)."""
    try:
        stream = open_lead_file(path)
        leads = iter(stream)
        first = next(leads, None)
        if first is None:
            return SourceOutcome(
                path=str(path),
                sha256=sha,
                batch=None,
                rejected=len(stream.rejects),
                error="no usable rows",
            )
        with session.begin_nested():
            batch = store_stream(
                session,
                stream,
                itertools.chain([first], leads),
                campaign=camp.name,
                priority=camp.priority,
                source=str(path),
                source_hash=sha,
            )
    except (LeadFileError, OSError) as exc:
        return SourceOutcome(path=str(path), sha256=sha, batch=None, error=str(exc))
    return SourceOutcome(
        path=str(path),
        sha256=sha,
        batch=batch,
        accepted=batch.accepted,
        rejected=batch.rejected,
    )


def _view(camp: Campaign, processed: int) -> ScheduledCampaign:
    return ScheduledCampaign(
        id=camp.id,
        name=camp.name,
        source=camp.source,
        cron=camp.cron,
        priority=camp.priority,
        enabled=camp.enabled,
        deadline=camp.deadline,
        last_run_at=camp.last_run_at,
        sources_processed=processed,
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
