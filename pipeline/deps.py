"""Process-wide dependencies handed to every stage (built after fork by workers/lifecycle.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, overload

from sqlalchemy.orm import Session, sessionmaker

from db.session import session_scope
from pipeline.batch.config import BatchPolicy
from pipeline.batch.planner import Plan
from pipeline.batch.provider import Cancellable
from pipeline.budget.models import Peeked, Reservation
from pipeline.llm.breaker import CircuitBreaker
from pipeline.llm.cache import ResponseCache
from pipeline.llm.providers.base import LLMProvider
from pipeline.llm.ratelimit import RateLimiter
from pipeline.llm.routing import RoutingTable
from pipeline.settings import ProviderBatchSettings, Settings, default_of
from pipeline.web.fetch import SiteClient, WebPolicy

if TYPE_CHECKING:
    from redis import Redis


class BudgetStatusView(Protocol):
    """The part of a budget status the router reads."""

    @property
    def throttle_level(self) -> int: ...

    @property
    def exhausted(self) -> bool: ...


class BudgetView(Protocol):
    """What the gateway and stages need from the budget guard (``budget.guard.BudgetGuard``)."""

    def status(self) -> BudgetStatusView: ...

    @overload
    def reserve(
        self, amount: Decimal, *, campaign_id: int | None = None, tier: str | None = None
    ) -> Reservation: ...

    @overload
    def reserve(
        self,
        amount: Decimal,
        *,
        campaign_id: int | None = None,
        tier: str | None = None,
        peek: Sequence[str],
    ) -> Reservation | Peeked: ...

    def settle(self, reservation: Reservation, actual: Decimal) -> None: ...

    def settle_many(
        self,
        settled: Sequence[tuple[Reservation, Decimal]],
        also: Callable[[Any], None] | None = None,
    ) -> None: ...

    def release(self, reservation: Reservation) -> None: ...


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Cost-control knobs the stages apply (from settings; seed 000 and issue 4)."""

    spend_cap_ratio: Decimal = field(
        default_factory=lambda: default_of(Settings, "spend_cap_ratio")
    )
    """A lead's spend cap is its estimated value times this ratio ($14,000 -> $0.0028)."""
    ab_testing: bool = default_of(Settings, "ab_testing")
    borderline_margin: float = 0.05
    """A cheap judge's score this close to the gate is checked again by the strongest judge."""
    sender_name: str = default_of(Settings, "sender_name")
    sender_company: str = default_of(Settings, "sender_company")
    sender_website: str | None = default_of(Settings, "sender_website")


@dataclass(slots=True)
class Deps:
    """Everything a stage needs; tests build one with fakes, workers with real clients."""

    session_factory: sessionmaker[Session]
    providers: dict[str, LLMProvider]
    routing: RoutingTable
    web_policy: WebPolicy = field(default_factory=WebPolicy)
    web_client: SiteClient | None = None
    """One client for every website fetch of the process (None: one per fetch)."""
    redis: Redis | None = None
    demo_tiers: frozenset[str] = frozenset(default_of(Settings, "demo_tiers"))
    policy: RoutingPolicy = field(default_factory=lambda: RoutingPolicy())
    budget: BudgetView | None = None
    breaker: CircuitBreaker | None = None
    cache: ResponseCache | None = None
    limiter: RateLimiter | None = None
    """Shared rate limits of the routing table (None: nothing limited, e.g. unit tests)."""
    stage_lease_s: int = default_of(Settings, "stage_lease_s")
    """A running stage row without an owner younger than this belongs to a live task."""
    heartbeat_grace_s: int = default_of(Settings, "heartbeat_ttl_s")
    """An owned running row this young is held even if its heartbeat is briefly missing."""
    batch: BatchPolicy | None = None
    """Which stage/model requests go through the batch path (routing table ``[batch]``)."""
    batch_apis: dict[str, Cancellable] = field(default_factory=dict)
    """Provider batch APIs by provider name (``openai``, ``anthropic``): a batchable model of
    that provider without a self-hosted endpoint goes there (``pipeline/batch/provider.py``)."""
    batch_plan: Plan = field(
        default_factory=lambda: Plan.of_seconds(
            default_of(ProviderBatchSettings, "turnaround_s"),
            default_of(ProviderBatchSettings, "margin_s"),
        )
    )
    """The deadline planner's expected batch turnaround and safety margin."""

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A short transaction: commit on success, roll back on error (R8)."""
        with session_scope(self.session_factory) as session:
            yield session
