"""Open provider batches, checked from beat: collect the finished ones, flip the late ones.

A provider batch (OpenAI Batch API, Anthropic Message Batches) takes minutes to hours, so the
collector submits it and returns; :func:`tick` (the beat task ``batch.provider_poll``) then asks
the planner about every open batch:

- its deadline is near or it is late (:func:`pipeline.batch.planner.check_open_batch`): the
  batch is cancelled at the provider (best effort: what it already answered is billed) and its
  requests go back to the sync path (``flip``), so their leads finish before the send-by time;
- otherwise it is polled: still running -> wait; finished -> ``deliver`` writes each answer
  (journal, ledger row under the request's journal key, budget settle) and sends each
  per-request error to the sync path.

An answer that arrives after its request was flipped is not written again: ``deliver`` skips
every request whose journal key already has a ledger row (the sync path's answer), so nothing
is recorded or settled twice.

The database side (which batches are open, writing answers, flipping requests, resuming leads)
is the :class:`OpenBatches` port, implemented over the collector's ``batch_groups`` /
``batch_requests`` tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from pipeline.batch.backend import BatchBackend, BatchItemResult
from pipeline.batch.planner import Plan, check_open_batch
from pipeline.errors import PipelineError

log = structlog.get_logger(__name__)
PROVIDER_BACKENDS = frozenset({"openai_batch", "anthropic_batch"})
AWAITING = "awaiting"
"""``batch_groups.status`` of a submitted provider batch: beat polls it, no collector holds it."""
FLIPPED = "flipped"
"""``batch_groups.status`` of a provider batch given up for the sync path."""


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A submitted provider batch waiting for its answers."""

    group_id: str
    backend: str
    """``openai_batch`` | ``anthropic_batch``."""
    provider: str
    """The provider whose backend polls it (``openai``, ``anthropic``)."""
    handle: str
    submitted_at: dt.datetime
    deadline: dt.datetime | None
    """The earliest deadline of the leads waiting in it (None: none has one)."""


class OpenBatches(Protocol):
    """The database side of the poll."""

    def open_batches(self) -> Sequence[OpenBatch]:
        """Every submitted provider batch not finished yet."""
        ...

    def deliver(self, batch: OpenBatch, results: Sequence[BatchItemResult]) -> tuple[int, int]:
        """Write the answers not already in the ledger, send errors to sync, finish the group,
        resume the leads; return (answers written, requests sent to sync)."""
        ...

    def flip(self, batch: OpenBatch, reason: str) -> int:
        """Send every unanswered request of the batch back to the sync path and resume its
        leads; return how many."""
        ...


class Cancellable(BatchBackend, Protocol):
    def cancel(self, handle: str) -> None:
        """Ask the provider to stop the batch."""
        ...


@dataclass(slots=True)
class Tick:
    """What one poll did."""

    waiting: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    flipped: list[str] = field(default_factory=list)
    answers: int = 0
    to_sync: int = 0
    errors: list[str] = field(default_factory=list)


def tick(
    batches: OpenBatches,
    backends: Mapping[str, Cancellable],
    plan: Plan,
    now: dt.datetime,
) -> Tick:
    """Check every open provider batch once (the beat task; safe to run twice)."""
    done = Tick()
    for batch in batches.open_batches():
        backend = backends.get(batch.provider)
        decision = check_open_batch(now, batch.submitted_at, batch.deadline, plan)
        if backend is None or decision.sync:
            reason = decision.reason if backend is not None else f"no {batch.backend} backend"
            _cancel(backend, batch)
            done.to_sync += batches.flip(batch, reason)
            done.flipped.append(batch.group_id)
            log.warning("provider_batch_flipped_to_sync", group=batch.group_id, reason=reason)
            continue
        try:
            results = backend.poll(batch.handle)
        except PipelineError as exc:  # the provider is away: try again next tick
            done.errors.append(f"{batch.group_id}: {exc}")
            log.warning("provider_batch_poll_failed", group=batch.group_id, error=str(exc))
            continue
        if results is None:
            done.waiting.append(batch.group_id)
            continue
        written, to_sync = batches.deliver(batch, results)
        done.delivered.append(batch.group_id)
        done.answers += written
        done.to_sync += to_sync
        log.info("provider_batch_delivered", group=batch.group_id, answers=written, sync=to_sync)
    return done


def _cancel(backend: Cancellable | None, batch: OpenBatch) -> None:
    if backend is None:
        return
    try:
        backend.cancel(batch.handle)
    except PipelineError as exc:  # it may have finished meanwhile; its answers are not used
        log.info("provider_batch_cancel_failed", group=batch.group_id, error=str(exc))
