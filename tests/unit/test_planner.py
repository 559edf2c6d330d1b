"""The deadline planner (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.batch.planner import (
    Path,
    Plan,
    check_open_batch,
    choose_path,
    deadline_held,
    flip_at,
    lead_deadline,
)

T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
PLAN = Plan.of_seconds(turnaround_s=3600, margin_s=1800)
H = dt.timedelta(hours=1)


def test_lead_deadline_is_the_earlier_of_send_by_and_the_batch_window() -> None:
    assert lead_deadline(None, None, T0) is None
    assert lead_deadline(T0 + 5 * H, None, T0) == T0 + 5 * H
    assert lead_deadline(None, 7200, T0) == T0 + 2 * H
    assert lead_deadline(T0 + 5 * H, 7200, T0) == T0 + 2 * H
    assert lead_deadline(T0 + H, 7200, T0) == T0 + H
    naive = dt.datetime(2026, 12, 2, 12, 0)  # SQLite hands back naive UTC
    assert lead_deadline(naive, None, None) == naive.replace(tzinfo=dt.UTC)
    assert lead_deadline(None, 60, None) is None


@pytest.mark.parametrize(
    ("left", "path"),
    [
        (None, Path.BATCH),
        (10 * H, Path.BATCH),
        (1.5 * H, Path.BATCH),  # exactly turnaround + margin still fits
        (1.5 * H - dt.timedelta(seconds=1), Path.SYNC),
        (dt.timedelta(0), Path.SYNC),
        (-H, Path.SYNC),  # already past: sync, never wait
    ],
)
def test_choose_path_batches_only_what_can_wait(left: dt.timedelta | None, path: Path) -> None:
    deadline = None if left is None else T0 + left
    decision = choose_path(T0, deadline, PLAN)
    assert decision.path is path
    assert decision.reason


def test_an_open_batch_waits_while_it_is_on_time() -> None:
    decision = check_open_batch(T0 + 0.5 * H, T0, T0 + 10 * H, PLAN)
    assert decision.path is Path.BATCH and "flip at" in decision.reason


def test_an_open_batch_flips_when_it_is_late() -> None:
    decision = check_open_batch(T0 + 1.1 * H, T0, T0 + 10 * H, PLAN)
    assert decision.sync and "late" in decision.reason


def test_an_open_batch_flips_when_the_deadline_is_within_the_margin() -> None:
    deadline = T0 + H
    assert check_open_batch(T0 + 0.4 * H, T0, deadline, PLAN).path is Path.BATCH
    decision = check_open_batch(T0 + 0.5 * H, T0, deadline, PLAN)
    assert decision.sync and "deadline near" in decision.reason
    assert flip_at(T0, deadline, PLAN) == T0 + 0.5 * H


def test_without_a_deadline_a_batch_waits_for_the_provider_window() -> None:
    assert check_open_batch(T0 + 23 * H, T0, None, PLAN).path is Path.BATCH
    assert check_open_batch(T0 + 24 * H, T0, None, PLAN).sync
    assert flip_at(T0, None, PLAN) == T0 + 24 * H
    assert flip_at(T0, T0 + 10 * H, PLAN) == T0 + H  # late first


def test_deadline_held() -> None:
    assert deadline_held(None, T0) is None
    assert deadline_held(T0, None) is None
    assert deadline_held(T0 + H, T0) is True
    assert deadline_held(T0, T0 + H) is False
