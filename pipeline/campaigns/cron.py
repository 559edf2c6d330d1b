"""Five-field cron expressions, checked when a campaign is scheduled (not when beat fires).

The grammar is the one Celery's ``crontab`` accepts, so anything valid here runs under beat:
``*``, ``*/n``, ``a``, ``a-b`` (wrapping: ``fri-mon``), ``a-b/n`` and comma lists; month names
(``jan``, ``january``) in the fourth field and weekday names (``mon``) in the fifth, where Sunday
is 0 (7 is rejected, as Celery does). The ``@hourly``/``@daily``/``@midnight``/``@weekly``/
``@monthly``/``@yearly`` aliases expand to their usual fields. Times are in UTC (Celery's zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_ALIASES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTH_NAMES: Final = ("jan", "feb", "mar", "apr", "may", "jun")
_MONTH_NAMES_2: Final = ("jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS: Final = {m: i for i, m in enumerate(_MONTH_NAMES + _MONTH_NAMES_2, 1)}
_WEEKDAYS: Final = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names allowed in the field)
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),
)
_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class CronError(ValueError):
    """An unusable cron expression; ``str(exc)`` says which field and why."""


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A validated expression: the five field texts and the values each one selects."""

    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str
    values: tuple[frozenset[int], ...]

    @property
    def expression(self) -> str:
        """The five fields joined by spaces (aliases already expanded)."""
        return " ".join(
            (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        )


def parse_cron(expression: str) -> CronSpec:
    """Validate a five-field cron expression.

    Args:
        expression: e.g. ``"0 2 * * *"`` (02:00 UTC every day) or ``"@daily"``.

    Returns:
        The normalised fields (lower-case) and the minute/hour/day/month/weekday sets.

    Raises:
        CronError: wrong number of fields, a bad token, a value out of range, or a day of month
            that never occurs in the chosen months (``0 0 31 2 *``).
    """
    text = _ALIASES.get(expression.strip().lower(), expression.strip().lower())
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise CronError(
            f"cron expression {expression!r} has {len(fields)} field(s); expected 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 2 * * *')"
        )
    values = tuple(
        _parse_field(field, name=name, low=low, high=high, names=names)
        for field, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
    )
    if min(values[2]) > max(_DAYS_IN_MONTH[m - 1] for m in values[3]):
        raise CronError(
            f"cron expression {expression!r}: day of month {fields[2]!r} never occurs "
            f"in month {fields[3]!r}"
        )
    minute, hour, day, month, weekday = fields
    return CronSpec(minute, hour, day, month, weekday, values=values)


def _parse_field(
    field: str, *, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    selected: set[int] = set()
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = _number(step_text, name=name, names={}) if step_text else 1
        if step < 1:
            raise CronError(f"cron {name}: step in {part!r} must be at least 1")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = (
                _number(first, name=name, names=names),
                _number(last, name=name, names=names),
            )
        elif step_text:  # Celery reads "5/15" as a bad literal: a step needs "*" or a range
            raise CronError(f"cron {name}: {part!r}: write a step as */n or a-b/n")
        else:
            start = end = _number(body, name=name, names=names)
        if not low <= start <= high or not low <= end <= high:
            raise CronError(f"cron {name}: {part!r} is outside {low}-{high}")
        # A range may wrap around, as in Celery: "fri-mon" is fri, sat, sun, mon.
        span = (
            list(range(start, end + 1))
            if start <= end
            else list(range(start, high + 1)) + list(range(low, end + 1))
        )
        selected.update(span[::step])
    return frozenset(selected)


def _number(token: str, *, name: str, names: dict[str, int]) -> int:
    if token.isdigit():
        return int(token)
    if len(token) >= 3 and token.isalpha() and token[:3] in names:  # "mon", "monday"
        return names[token[:3]]
    raise CronError(f"cron {name}: {token!r} is not a number" + (" or a name" if names else ""))
