"""Process-wide dependencies handed to every stage (built after fork by workers/lifecycle.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from db.session import session_scope
from pipeline.providers.base import LLMProvider
from pipeline.routing import RoutingTable
from pipeline.web import WebPolicy

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the gateway tries one model before falling back to the next."""

    attempts_per_model: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


@dataclass(slots=True)
class Deps:
    """Everything a stage needs; tests build one with fakes, workers with real clients."""

    session_factory: sessionmaker[Session]
    providers: dict[str, LLMProvider]
    routing: RoutingTable
    web_policy: WebPolicy = field(default_factory=WebPolicy)
    redis: Redis | None = None
    demo_tiers: frozenset[str] = frozenset({"enterprise"})
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A short transaction: commit on success, roll back on error (R8)."""
        with session_scope(self.session_factory) as session:
            yield session
