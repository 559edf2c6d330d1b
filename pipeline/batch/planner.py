"""The deadline planner: which work may wait for a provider batch, and when a batch is given up.

Pure functions over datetimes; no database, no clock (``now`` is always passed in).

A campaign may have a send-by time (``campaigns.send_by``, an absolute moment) and/or a window
per enqueued batch (``campaigns.send_within_s``: each batch's emails are due that long after the
batch was enqueued). A lead's deadline is the earlier of the two; no deadline means the work can
always wait.

- :func:`choose_path`: a request goes to the cheaper provider batch only when the batch's
  expected turnaround plus the safety margin still fits before the deadline; otherwise it runs
  on the sync path now.
- :func:`check_open_batch`: an open batch flips back to sync when the deadline is within the
  margin (``now >= deadline - margin``) or the batch is late (older than its expected turnaround
  while a deadline waits); without a deadline it waits until the provider's 24 h window ends.
  The margin is the time the sync path needs to finish the work, so a flip always comes "in
  time" as long as the margin covers a sync run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

PROVIDER_WINDOW = dt.timedelta(hours=24)
"""OpenAI's ``completion_window`` and Anthropic's expiry: a batch is never answered after it."""


class Path(StrEnum):
    BATCH = "batch"
    SYNC = "sync"


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's timings (``LEADPIPE_PROVIDER_BATCH__TURNAROUND_S`` and ``__MARGIN_S``)."""

    turnaround: dt.timedelta
    """How long a provider batch is expected to take."""
    margin: dt.timedelta
    """Time kept in hand to finish on the sync path."""

    @classmethod
    def of_seconds(cls, turnaround_s: float, margin_s: float) -> Plan:
        return cls(dt.timedelta(seconds=turnaround_s), dt.timedelta(seconds=margin_s))


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the work goes, and why (logged and shown in the report)."""

    path: Path
    reason: str

    @property
    def sync(self) -> bool:
        return self.path is Path.SYNC


def lead_deadline(
    send_by: dt.datetime | None,
    send_within_s: int | None,
    enqueued_at: dt.datetime | None,
) -> dt.datetime | None:
    """The moment a lead's email must be ready: the earlier of the campaign's send-by time and
    its enqueue time plus the campaign's per-batch window; None when neither is set."""
    candidates = []
    if send_by is not None:
        candidates.append(_aware(send_by))
    if send_within_s is not None and enqueued_at is not None:
        candidates.append(_aware(enqueued_at) + dt.timedelta(seconds=send_within_s))
    return min(candidates) if candidates else None


def choose_path(now: dt.datetime, deadline: dt.datetime | None, plan: Plan) -> Decision:
    """Batch when the work can wait for one (turnaround + margin fit before the deadline)."""
    if deadline is None:
        return Decision(Path.BATCH, "no deadline")
    left = _aware(deadline) - _aware(now)
    needed = plan.turnaround + plan.margin
    if left >= needed:
        return Decision(Path.BATCH, f"{_span(left)} left >= {_span(needed)} turnaround + margin")
    return Decision(Path.SYNC, f"deadline near: {_span(left)} left < {_span(needed)}")


def check_open_batch(
    now: dt.datetime,
    submitted_at: dt.datetime,
    deadline: dt.datetime | None,
    plan: Plan,
) -> Decision:
    """Keep waiting for a submitted batch (``BATCH``) or flip its requests to sync (``SYNC``)."""
    now, submitted_at = _aware(now), _aware(submitted_at)
    age = now - submitted_at
    if deadline is None:
        if age >= PROVIDER_WINDOW:
            return Decision(Path.SYNC, f"batch past the provider's {_span(PROVIDER_WINDOW)} window")
        return Decision(Path.BATCH, "no deadline")
    latest = _aware(deadline) - plan.margin
    if now >= latest:
        left = _aware(deadline) - now
        return Decision(
            Path.SYNC, f"deadline near: {_span(left)} left, margin {_span(plan.margin)}"
        )
    if age > plan.turnaround:
        return Decision(
            Path.SYNC, f"batch late: {_span(age)} > turnaround {_span(plan.turnaround)}"
        )
    return Decision(Path.BATCH, f"waiting: flip at {latest.isoformat(timespec='seconds')}")


def flip_at(submitted_at: dt.datetime, deadline: dt.datetime | None, plan: Plan) -> dt.datetime:
    """The latest moment a batch submitted at ``submitted_at`` is waited for."""
    late = _aware(submitted_at) + plan.turnaround
    if deadline is None:
        return _aware(submitted_at) + PROVIDER_WINDOW
    return min(late, _aware(deadline) - plan.margin)


def deadline_held(deadline: dt.datetime | None, finished_at: dt.datetime | None) -> bool | None:
    """Whether work finished by its deadline; None when there is no deadline or it is unfinished."""
    if deadline is None or finished_at is None:
        return None
    return _aware(finished_at) <= _aware(deadline)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _span(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if seconds >= 3600:
        return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{sign}{seconds // 60}m{seconds % 60:02d}s"
    return f"{sign}{seconds}s"
