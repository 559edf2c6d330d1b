"""Issue 14: how a task sends a rate-limited call again (workers/base.py)."""

from __future__ import annotations

import pytest

from pipeline.errors import RateLimited
from workers.base import PARK_AFTER_RETRIES
from workers.tasks import score_lead


def _deferrals(
    monkeypatch: pytest.MonkeyPatch, retries: int, exc: RateLimited
) -> tuple[list[tuple[float, int]], list[str]]:
    task = score_lead
    sent: list[tuple[float, int]] = []
    parked: list[str] = []
    monkeypatch.setattr(task, "_send_later", lambda c, *, retries: sent.append((c, retries)))
    monkeypatch.setattr(task, "_note_parked", lambda kwargs, e: parked.append(str(e)))
    task.push_request(retries=retries)
    try:
        task._defer({"lead_id": 1, "run_id": "r"}, exc)
    finally:
        task.pop_request()
    return sent, parked


def test_our_own_limit_paces_without_counting_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, parked = _deferrals(monkeypatch, 40, RateLimited("model:x req/min", 12.5))
    assert sent == [(12.5, 40)] and not parked  # a long backlog never parks a lead


def test_a_providers_429_counts_and_parks_a_lead_that_is_always_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent, parked = _deferrals(monkeypatch, 2, RateLimited("x answered 429", 7.0, refused=True))
    assert sent == [(7.0, 3)] and not parked
    sent, parked = _deferrals(
        monkeypatch, PARK_AFTER_RETRIES, RateLimited("x answered 429", 7.0, refused=True)
    )
    assert sent == [(7.0, PARK_AFTER_RETRIES + 1)] and parked == [
        "rate limited: x answered 429: retry in 7.0s"
    ]
