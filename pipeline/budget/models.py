"""Budget value objects: configuration, reservations, status (see ``pipeline/budget.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline.budget.throttle import Window, from_micros
from pipeline.errors import BudgetExhausted
from pipeline.settings import BudgetSettings, default_of


class BudgetRefused(BudgetExhausted):
    """A reservation was refused; the task is parked and retried after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: int, period: str, scope: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.period = period
        self.scope = scope


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Budget settings as plain values (``limits`` are the defaults until ``budget set``)."""

    limits: dict[str, Decimal]
    timezone: str = default_of(BudgetSettings, "timezone")
    emergency_reserve: Decimal = field(
        default_factory=lambda: default_of(BudgetSettings, "emergency_reserve_usd")
    )
    alert_thresholds: tuple[Decimal, ...] = tuple(default_of(BudgetSettings, "alert_thresholds"))
    throttle_thresholds: tuple[Decimal, ...] = tuple(
        default_of(BudgetSettings, "throttle_thresholds")
    )
    park_retry_s: int = default_of(BudgetSettings, "park_retry_s")
    stale_reservation_s: int = default_of(BudgetSettings, "stale_reservation_s")
    webhook: bool = False

    @classmethod
    def from_settings(cls, s: BudgetSettings) -> BudgetConfig:
        """Build from the ``budget`` section of the settings."""
        return cls(
            limits={"daily": s.daily_usd, "weekly": s.weekly_usd, "monthly": s.monthly_usd},
            timezone=s.timezone,
            emergency_reserve=s.emergency_reserve_usd,
            alert_thresholds=tuple(s.alert_thresholds),
            throttle_thresholds=tuple(s.throttle_thresholds),
            park_retry_s=s.park_retry_s,
            stale_reservation_s=s.stale_reservation_s,
            webhook=s.webhook_url is not None,
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted reservation: settle or release it exactly once."""

    rid: str
    micros: int
    keys: tuple[str, ...]

    @property
    def amount_usd(self) -> Decimal:
        return from_micros(self.micros)


@dataclass(frozen=True, slots=True)
class Peeked:
    """A peek key existed, so nothing was reserved: which one (index) and its value."""

    index: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PeriodStatus:
    """One period of one scope (``global`` or ``campaign:<id>``)."""

    scope: str
    window: Window
    key: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    pct: Decimal
    exhausted: bool

    def to_json(self) -> dict[str, Any]:
        """Money as decimal strings, pct as a percentage string."""
        return {
            "scope": self.scope,
            "period": self.window.period.value,
            "start": self.window.start.isoformat(),
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "pct": str((self.pct * 100).quantize(Decimal("0.1"))),
            "exhausted": self.exhausted,
        }


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Every current period plus the global throttle level (0..5) the router reads."""

    periods: tuple[PeriodStatus, ...]
    throttle_level: int
    exhausted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "throttle_level": self.throttle_level,
            "exhausted": self.exhausted,
            "periods": [p.to_json() for p in self.periods],
        }
