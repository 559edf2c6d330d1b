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

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import structlog

from pipeline.liveness import is_transient
from pipeline.models import LLMResponse, Route, Usage

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

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

    def to_json(self) -> str:
        """The stored form (every field is a plain str, int, bool or None)."""
        return json.dumps({name: getattr(self, name) for name in _FIELDS})

    def route(self) -> Route:
        return Route(self.provider, self.model, self.max_output_tokens, self.reason)

    def response(self) -> LLMResponse:
        usage = Usage(self.input_tokens, self.output_tokens)
        return LLMResponse(
            self.text, usage, self.provider, self.model, self.finish_reason, self.simulated
        )


_FIELDS = tuple(f.name for f in fields(Entry))
# KEYS: the journal key, then keys to delete. ARGV: the entry, its TTL. One command where a
# pipeline of SET + DEL cost the client a pipeline's bookkeeping for the same round trip.
_REMEMBER = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
return 1
"""


@functools.lru_cache(maxsize=8)
def _remember_script(client: Redis) -> Script:
    """``_REMEMBER`` bound to ``client``: redis-py sends EVALSHA and loads the script when the
    server does not have it (first use, or Redis restarted), as for the budget's scripts."""
    return client.register_script(_REMEMBER)


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
            keys = [PREFIX + journal_key, *clear]
            _remember_script(client)(keys=keys, args=[entry.to_json(), TTL_S])
        else:
            client.set(PREFIX + journal_key, entry.to_json(), ex=TTL_S)
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
