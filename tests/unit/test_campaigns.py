"""Cron validation, deadline parsing and source discovery for scheduled campaigns."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from celery.schedules import crontab

from pipeline.campaigns.cron import CronError, parse_cron
from pipeline.campaigns.schedules import CampaignError, discover_sources, parse_deadline

NOW = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)
FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def _celery_sets(expression: str) -> tuple[object, ...]:
    schedule = crontab(**dict(zip(FIELDS, expression.split(), strict=True)))
    return tuple(getattr(schedule, name) for name in FIELDS)


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "0 2 * * *",
        "*/15 9-17 * * mon-fri",
        "5,10-30/10 0 1 jan,jul *",
        "0 0 29 2 *",
        "59 23 31 12 sat",
        "0 */6 1-15 * 0",
        "0 0 * * fri-mon",
        "50-10/5 * * * *",
        "0 0 * january monday",
    ],
)
def test_valid_cron_selects_what_celery_selects(expression: str) -> None:
    spec = parse_cron(expression)
    assert spec.values == _celery_sets(expression)
    assert spec.expression == expression


def test_aliases_expand() -> None:
    assert parse_cron("@daily").expression == "0 0 * * *"
    assert parse_cron(" @Hourly ").expression == "0 * * * *"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * *", "has 4 field(s); expected 5"),
        ("0 2 * * * *", "has 6 field(s)"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("0 24 * * *", "hour: '24' is outside 0-23"),
        ("0 0 0 * *", "day of month: '0' is outside 1-31"),
        ("0 0 * 13 *", "month: '13' is outside 1-12"),
        ("0 0 * * 7", "day of week: '7' is outside 0-6"),
        ("*/0 * * * *", "step in '*/0' must be at least 1"),
        ("5/15 * * * *", "write a step as */n or a-b/n"),
        ("0 0 * jan-x *", "'x' is not a number or a name"),
        ("0 0 * * mo", "'mo' is not a number or a name"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("0 0 31 2 *", "day of month '31' never occurs in month '2'"),
        ("", "has 0 field(s)"),
    ],
)
def test_invalid_cron_is_refused_with_a_reason(expression: str, message: str) -> None:
    with pytest.raises(CronError) as exc:
        parse_cron(expression)
    assert message in str(exc.value)
    # Celery would refuse these too (the field-count cases cannot even be expressed).
    if len(expression.split()) == 5:
        with pytest.raises(ValueError):
            _celery_sets(expression)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-01T00:00:00Z", dt.datetime(2025, 7, 1, tzinfo=dt.UTC)),
        ("2025-07-01T02:00:00+02:00", dt.datetime(2025, 7, 1, tzinfo=dt.UTC)),
        ("2025-07-01", dt.datetime(2025, 7, 1, tzinfo=dt.UTC)),
        ("P30D", NOW + dt.timedelta(days=30)),
        ("PT12H", NOW + dt.timedelta(hours=12)),
        ("P1W", NOW + dt.timedelta(weeks=1)),
        ("P1DT2H30M", NOW + dt.timedelta(days=1, hours=2, minutes=30)),
        ("90m", NOW + dt.timedelta(minutes=90)),
        ("12h", NOW + dt.timedelta(hours=12)),
        ("2w", NOW + dt.timedelta(weeks=2)),
    ],
)
def test_deadline_is_a_datetime_or_a_duration(text: str, expected: dt.datetime) -> None:
    assert parse_deadline(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "P", "PT", "P0D", "0h", "12 parsecs", ""])
def test_bad_deadline_is_refused(text: str) -> None:
    with pytest.raises(CampaignError):
        parse_deadline(text, now=NOW)


def _touch(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("company\nAcme\n")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


def test_directory_source_lists_settled_lead_files_only(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.CSV", "notes.txt", ".hidden.csv", "sub/deep.csv"):
        _touch(tmp_path / name, age_s=60)
    (tmp_path / "dir.csv").mkdir()
    _touch(tmp_path / "copying.csv", age_s=0)
    assert [p.name for p in discover_sources(tmp_path)] == ["a.CSV", "b.jsonl"]
    found = discover_sources(tmp_path, settle_s=0, now=time.time() + 1)
    assert [p.name for p in found] == ["a.CSV", "b.jsonl", "copying.csv"]


def test_file_source_is_taken_as_is_and_a_missing_source_is_empty(tmp_path: Path) -> None:
    leads = _touch(tmp_path / "export.txt", age_s=0)
    assert discover_sources(leads) == [leads]
    assert discover_sources(tmp_path / "not-there") == []
