"""Budget arithmetic: calendar periods in a time zone, alert crossings, throttle levels."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pipeline.budget.throttle import (
    Period,
    crossed,
    estimate_tokens,
    levels_between,
    throttle_level,
    to_micros,
    ttl_multiplier,
    usage_pct,
    window,
)

LEVELS = [Decimal(x) for x in ("0.5", "0.7", "0.8", "0.9", "1.0")]
ALERTS = [Decimal("0.7"), Decimal("0.9"), Decimal("1.0")]
UTC = dt.UTC


def test_daily_window_is_local_midnight_to_midnight() -> None:
    # 03:30 UTC on 2025-03-10 is still 2025-03-09 in New York (UTC-4 after DST began).
    win = window(Period.DAILY, dt.datetime(2025, 3, 10, 3, 30, tzinfo=UTC), "America/New_York")
    assert win.label == "2025-03-09"
    assert win.start.astimezone(UTC) == dt.datetime(2025, 3, 9, 5, 0, tzinfo=UTC)
    # DST started that day: the local day is 23 hours long.
    assert win.end.astimezone(UTC) - win.start.astimezone(UTC) == dt.timedelta(hours=23)
    assert win.end.astimezone(UTC) == dt.datetime(2025, 3, 10, 4, 0, tzinfo=UTC)


def test_weekly_window_starts_on_iso_monday() -> None:
    sunday_night = dt.datetime(2025, 1, 5, 23, 0, tzinfo=UTC)  # Monday 08:00 in Tokyo
    assert window(Period.WEEKLY, sunday_night, "UTC").label == "2024-12-30"
    assert window(Period.WEEKLY, sunday_night, "Asia/Tokyo").label == "2025-01-06"


@pytest.mark.parametrize(
    ("now", "label", "end"),
    [
        (dt.datetime(2025, 1, 31, 12, tzinfo=UTC), "2025-01-01", "2025-02-01"),
        (dt.datetime(2024, 2, 29, 12, tzinfo=UTC), "2024-02-01", "2024-03-01"),
        (dt.datetime(2025, 12, 31, 23, tzinfo=UTC), "2025-12-01", "2026-01-01"),
    ],
)
def test_monthly_window(now: dt.datetime, label: str, end: str) -> None:
    win = window(Period.MONTHLY, now, "UTC")
    assert (win.label, win.end.date().isoformat()) == (label, end)


def test_money_rounds_up_to_micro_dollars() -> None:
    assert to_micros(Decimal("0.05")) == 50_000
    assert to_micros(Decimal("0.0000001")) == 1
    assert to_micros(Decimal("0.000002000000")) == 2


def test_prompt_tokens_are_chars_over_four_rounded_up() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]


def test_crossings_are_the_thresholds_reached() -> None:
    assert crossed(Decimal("0.69"), ALERTS) == []
    assert crossed(Decimal("0.7"), ALERTS) == [Decimal("0.7")]
    assert crossed(Decimal("0.95"), ALERTS) == [Decimal("0.7"), Decimal("0.9")]
    assert crossed(Decimal("1.2"), ALERTS) == ALERTS


def test_exhausted_period_counts_as_full() -> None:
    assert usage_pct(40, 100) == Decimal("0.4")
    assert usage_pct(40, 100, exhausted=True) == Decimal(1)
    assert usage_pct(150, 100, exhausted=True) == Decimal("1.5")
    assert usage_pct(0, 0) == Decimal(1)


@pytest.mark.parametrize(
    ("pct", "level"),
    [("0", 0), ("0.49", 0), ("0.5", 1), ("0.75", 2), ("0.8", 3), ("0.95", 4), ("1", 5), ("3", 5)],
)
def test_level_mapping_reaches_five_at_full_budget(pct: str, level: int) -> None:
    assert throttle_level(Decimal(pct), LEVELS) == level


def test_level_changes_apply_every_level_in_order() -> None:
    assert levels_between(0, 5) == [1, 2, 3, 4, 5]
    assert levels_between(2, 4) == [3, 4]
    assert levels_between(5, 1) == [1]
    assert levels_between(3, 3) == []


def test_cache_ttls_grow_five_fold_from_level_four() -> None:
    assert [ttl_multiplier(level) for level in range(6)] == [1, 1, 1, 1, 5, 5]
