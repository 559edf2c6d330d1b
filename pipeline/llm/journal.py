"""The durable answer journal: a paid answer is written to Redis before anything else can fail.

The ledger row is the journal of record, but writing it needs the database. Between a provider's
200 and that commit, a PostgreSQL restart (or any DB error) used to lose the answer, and the
retried task paid for the same call again. So the gateway stores the answer here first, under
the call's journal key; a retry that finds an entry here and no ledger row writes the row from
the entry (same request id, so it is written once) instead of calling the provider.

Redis keeps it across a restart with AOF. If Redis itself is unreachable at that instant the
entry is skipped (logged) and the ledger write is the only record, as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import structlog

from pipeline.liveness import is_transient
from pipeline.models import LLMResponse, Route, Usage

if TYPE_CHECKING:
    from redis import Redis

log = structlog.get_logger(__name__)
PREFIX = "leadpipe:journal:"
TTL_S = 7 * 86400
"""Long enough for any retry or ``leadpipe retry`` of the lead; the ledger keeps it for good."""


@dataclass(frozen=True, slots=True)
class Entry:
    """Everything needed to write the ledger row of a paid answer without calling again."""

    request_id: str
    provider: str
    model: str
    max_output_tokens: int
    reason: str
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    simulated: bool
    attempt: int
    fallback_from: str | None

    @classmethod
    def of(
        cls,
        request_id: str,
        route: Route,
        response: LLMResponse,
        attempt: int,
        fallback_from: str | None,
    ) -> Entry:
        return cls(
            request_id=request_id,
            provider=route.provider,
            model=route.model,
            max_output_tokens=route.max_output_tokens,
            reason=route.reason,
            text=response.text,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            finish_reason=response.finish_reason,
            simulated=response.simulated,
            attempt=attempt,
            fallback_from=fallback_from,
        )

    def route(self) -> Route:
        return Route(self.provider, self.model, self.max_output_tokens, self.reason)

    def response(self) -> LLMResponse:
        usage = Usage(self.input_tokens, self.output_tokens)
        return LLMResponse(
            self.text, usage, self.provider, self.model, self.finish_reason, self.simulated
        )


def remember(
    client: Redis | None, journal_key: str, entry: Entry, *, clear: Sequence[str] = ()
) -> bool:
    """Store a paid answer; False (logged) when Redis cannot take it right now.

    ``clear``: keys deleted in the same round trip (the model's circuit-breaker failure count,
    when its answer was valid).
    """
    if client is None:
        return False
    try:
        if clear:
            pipe = client.pipeline(transaction=False)
            pipe.set(PREFIX + journal_key, json.dumps(asdict(entry)), ex=TTL_S)
            pipe.delete(*clear)
            pipe.execute()
        else:
            client.set(PREFIX + journal_key, json.dumps(asdict(entry)), ex=TTL_S)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("journal_unavailable", journal_key=journal_key, error=type(exc).__name__)
        return False
    return True


def recall(client: Redis | None, journal_key: str) -> Entry | None:
    """The stored answer for ``journal_key``, if one was paid for and journaled."""
    if client is None:
        return None
    raw = client.get(PREFIX + journal_key)
    if raw is None:
        return None
    return Entry(**json.loads(raw))
