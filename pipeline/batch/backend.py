"""The batch backend contract: what the collector hands a backend and what it gets back.

Every backend (the self-hosted endpoint, OpenAI's Batch API, Anthropic's Message Batches)
takes a group of requests for one model and answers each of them by its ``request_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from pipeline.models import LLMRequest, LLMResponse

__all__ = ["BatchBackend", "BatchItem", "BatchItemResult"]


@dataclass(frozen=True)
class BatchItem:
    """One model request inside a group."""

    request_id: str
    """Stable: the sync path's journal key for the same call (so replay/dedupe works)."""
    request: LLMRequest


@dataclass(frozen=True)
class BatchItemResult:
    """One request's answer, or why it has none."""

    request_id: str
    response: LLMResponse | None
    """Priced like the sync path; None on error."""
    error: str | None
    """A per-request error: that request goes back to the sync path."""
    cost_usd: Decimal | None = None
    """What this answer cost (batch discount, $/GPU-second share); None = price the usage at
    the catalogue price, like the sync path."""


class BatchBackend(Protocol):
    """Sends a group of requests for one model and collects the answers."""

    name: str
    """``selfhosted`` | ``openai_batch`` | ``anthropic_batch``."""

    def submit(self, model: str, items: Sequence[BatchItem]) -> str:
        """Send the group; return an external handle to poll. May finish the work here."""
        ...

    def poll(self, handle: str) -> Sequence[BatchItemResult] | None:
        """Every item's result once the group is done; None while it is not finished yet."""
        ...
