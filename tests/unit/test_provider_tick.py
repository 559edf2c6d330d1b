"""The beat poll of open provider batches (``pipeline.batch.provider.tick``) with fakes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pipeline.batch.backend import BatchItem, BatchItemResult
from pipeline.batch.planner import Plan
from pipeline.batch.provider import OpenBatch, tick
from pipeline.errors import ProviderUnavailable

T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
PLAN = Plan.of_seconds(turnaround_s=3600, margin_s=600)


class FakeBackend:
    name = "openai_batch"

    def __init__(self, answer: Sequence[BatchItemResult] | Exception | None) -> None:
        self.answer = answer
        self.cancelled: list[str] = []

    def submit(self, model: str, items: Sequence[BatchItem]) -> str:
        return "b1"

    def poll(self, handle: str) -> Sequence[BatchItemResult] | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)


class FakeGroups:
    def __init__(self, *batches: OpenBatch) -> None:
        self.batches = list(batches)
        self.delivered: list[tuple[str, int]] = []
        self.flips: list[tuple[str, str]] = []

    def open_batches(self) -> Sequence[OpenBatch]:
        return self.batches

    def deliver(self, batch: OpenBatch, results: Sequence[BatchItemResult]) -> tuple[int, int]:
        self.delivered.append((batch.group_id, len(results)))
        ok = sum(r.response is not None for r in results)
        return ok, len(results) - ok

    def flip(self, batch: OpenBatch, reason: str) -> int:
        self.flips.append((batch.group_id, reason))
        return 2


def _batch(deadline: dt.datetime | None, provider: str = "openai") -> OpenBatch:
    return OpenBatch("g1", "openai_batch", provider, "b1", T0, deadline)


def test_a_running_batch_on_time_is_left_waiting() -> None:
    groups, backend = FakeGroups(_batch(T0 + dt.timedelta(hours=5))), FakeBackend(None)
    done = tick(groups, {"openai": backend}, PLAN, T0 + dt.timedelta(minutes=10))
    assert done.waiting == ["g1"] and not groups.flips and not groups.delivered
    assert backend.cancelled == []


def test_a_finished_batch_is_delivered() -> None:
    results = [BatchItemResult("a", None, "boom")]
    groups = FakeGroups(_batch(None))
    done = tick(groups, {"openai": FakeBackend(results)}, PLAN, T0)
    assert groups.delivered == [("g1", 1)] and (done.answers, done.to_sync) == (0, 1)


def test_a_late_batch_is_cancelled_and_flipped_without_polling() -> None:
    backend = FakeBackend(ProviderUnavailable("openai", "should not be polled"))
    groups = FakeGroups(_batch(T0 + dt.timedelta(hours=5)))
    done = tick(groups, {"openai": backend}, PLAN, T0 + dt.timedelta(hours=1, seconds=1))
    assert done.flipped == ["g1"] and done.to_sync == 2
    assert backend.cancelled == ["b1"] and "late" in groups.flips[0][1]


def test_a_deadline_within_the_margin_flips() -> None:
    groups, backend = FakeGroups(_batch(T0 + dt.timedelta(minutes=15))), FakeBackend(None)
    done = tick(groups, {"openai": backend}, PLAN, T0 + dt.timedelta(minutes=6))
    assert done.flipped == ["g1"] and "deadline near" in groups.flips[0][1]


def test_a_provider_error_waits_for_the_next_tick() -> None:
    backend = FakeBackend(ProviderUnavailable("openai", "HTTP 503"))
    groups = FakeGroups(_batch(None))
    done = tick(groups, {"openai": backend}, PLAN, T0)
    assert done.errors and not groups.flips and not groups.delivered


def test_a_batch_without_a_backend_goes_back_to_sync() -> None:
    groups = FakeGroups(_batch(None, provider="anthropic"))
    done = tick(groups, {"openai": FakeBackend(None)}, PLAN, T0)
    assert done.flipped == ["g1"] and "no openai_batch backend" in groups.flips[0][1]
