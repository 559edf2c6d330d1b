"""Pure budget arithmetic: calendar periods, alert crossings, throttle levels (seed 003 section 4).

Throttle levels (cumulative; each level keeps the effects of the levels below it):

====  ======================================================  ==========================
level effect                                                  applied by
====  ======================================================  ==========================
0     normal routing                                          -
1     A/B tests and other non-critical work disabled          router (``throttle_level``)
2     council reduced to one model                            router
3     every smb lead on the cheapest model                    router
4     cache TTLs x5 (:func:`ttl_multiplier`)                  cache
5     ``analyze`` and ``demo`` queues paused                  ``workers/control.py``
====  ======================================================  ==========================

Personalisation falls back to template-only when the budget is exhausted (router); classify and
score keep running.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

MICROS = Decimal(1_000_000)
MAX_LEVEL = 5
PAUSED_AT_LEVEL = 5
PAUSE_QUEUES = ("analyze", "demo")


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class Window:
    """One calendar period: ``[start, end)`` as aware datetimes in the budget time zone."""

    period: Period
    start: dt.datetime
    end: dt.datetime

    @property
    def label(self) -> str:
        """The local start date, e.g. ``2025-03-03`` (a Monday for weekly windows)."""
        return self.start.date().isoformat()


def window(period: Period, now: dt.datetime, tz: str) -> Window:
    """The calendar period containing ``now`` (aware) in time zone ``tz``.

    Daily windows start at local midnight, weekly ones on Monday (ISO week), monthly ones on
    the first of the month. DST days are 23 or 25 hours long, as on the wall clock.
    """
    zone = ZoneInfo(tz)
    local = now.astimezone(zone).date()
    if period is Period.DAILY:
        first, nxt = local, local + dt.timedelta(days=1)
    elif period is Period.WEEKLY:
        first = local - dt.timedelta(days=local.weekday())
        nxt = first + dt.timedelta(days=7)
    else:
        first = local.replace(day=1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
    return Window(period, _midnight(first, zone), _midnight(nxt, zone))


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def to_micros(amount: Decimal) -> int:
    """Dollars to integer micro-dollars, rounded up (bookkeeping never under-counts)."""
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))


def from_micros(micros: int) -> Decimal:
    """Integer micro-dollars to dollars."""
    return Decimal(micros) / MICROS


def estimate_tokens(text: str) -> int:
    """Prompt tokens estimated as ceil(chars / 4) (tiktoken cannot fetch its files here)."""
    return math.ceil(len(text) / 4)


def usage_pct(spent: int, limit: int, *, exhausted: bool = False) -> Decimal:
    """Share of a limit used, as a fraction (1 means 100 %); an exhausted period counts as 1."""
    if limit <= 0:
        return Decimal(1)
    pct = Decimal(spent) / Decimal(limit)
    return max(pct, Decimal(1)) if exhausted else pct


def crossed(pct: Decimal, thresholds: Sequence[Decimal]) -> list[Decimal]:
    """The alert thresholds at or below ``pct``, lowest first."""
    return sorted(t for t in thresholds if pct >= t)


def throttle_level(pct: Decimal, thresholds: Sequence[Decimal]) -> int:
    """Level 0..5: how many of the five ascending ``thresholds`` ``pct`` has reached."""
    return min(MAX_LEVEL, sum(1 for t in thresholds if pct >= t))


def levels_between(old: int, new: int) -> list[int]:
    """The levels to apply, in order, when moving from ``old`` to ``new`` (one step when down)."""
    if new > old:
        return list(range(old + 1, new + 1))
    return [new] if new < old else []


def ttl_multiplier(level: int) -> int:
    """Cache TTL multiplier for a throttle level: x5 from level 4 (seed 003 section 4.2)."""
    return 5 if level >= 4 else 1
