"""Process-wide dependencies handed to every stage (built after fork by workers/lifecycle.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from db.session import session_scope
from pipeline.breaker import CircuitBreaker
from pipeline.budget_models import Reservation
from pipeline.cache import ResponseCache
from pipeline.providers.base import LLMProvider
from pipeline.routing import RoutingTable
from pipeline.web import WebPolicy

if TYPE_CHECKING:
    from redis import Redis


class BudgetStatusView(Protocol):
    """The part of a budget status the router reads."""

    @property
    def throttle_level(self) -> int: ...

    @property
    def exhausted(self) -> bool: ...


class BudgetView(Protocol):
    """What the gateway and stages need from the budget guard (``pipeline.budget.BudgetGuard``)."""

    def status(self) -> BudgetStatusView: ...

    def reserve(
        self, amount: Decimal, *, campaign_id: int | None = None, tier: str | None = None
    ) -> Reservation: ...

    def settle(self, reservation: Reservation, actual: Decimal) -> None: ...

    def release(self, reservation: Reservation) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the gateway tries one model before falling back to the next."""

    attempts_per_model: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Cost-control knobs the stages apply (from settings; seed 000 and issue 4)."""

    spend_cap_ratio: Decimal = Decimal("0.0000002")
    """A lead's spend cap is its estimated value times this ratio ($14,000 -> $0.0028)."""
    ab_testing: bool = True
    borderline_margin: float = 0.05
    """A cheap judge's score this close to the gate is checked again by the strongest judge."""
    sender_name: str = "Alex Morgan"
    sender_company: str = "leadpipe"


@dataclass(slots=True)
class Deps:
    """Everything a stage needs; tests build one with fakes, workers with real clients."""

    session_factory: sessionmaker[Session]
    providers: dict[str, LLMProvider]
    routing: RoutingTable
    web_policy: WebPolicy = field(default_factory=WebPolicy)
    redis: Redis | None = None
    demo_tiers: frozenset[str] = frozenset({"enterprise"})
    policy: RoutingPolicy = field(default_factory=lambda: RoutingPolicy())
    budget: BudgetView | None = None
    breaker: CircuitBreaker | None = None
    cache: ResponseCache | None = None
    stage_lease_s: int = 300
    """A running stage row younger than this belongs to a live task (see stages._common)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A short transaction: commit on success, roll back on error (R8)."""
        with session_scope(self.session_factory) as session:
            yield session
