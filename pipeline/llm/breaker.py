"""Circuit breaker per model, shared by every worker through Redis (seed 003 pitfall 2).

After ``threshold`` consecutive failures a model is taken out of every chain for ``cooldown_s``
seconds; the first success closes the breaker again. A refusal that every call would repeat (bad
key, unknown model) trips it at once. Timeouts are not failures here: a slow model is not broken.
Without Redis (unit tests) it is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from redis import Redis

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Counts consecutive failures per ``provider:model`` in Redis."""

    redis: Redis | None
    threshold: int = 5
    cooldown_s: int = 60

    def blocked(self, ref: str) -> tuple[str | None, bool]:
        """``(refused reason or None, open)`` for ``ref`` in one round trip."""
        if self.redis is None:
            return None, False
        refused, opened = self.redis.mget(self.refused_key(ref), self.open_key(ref))
        reason = refused.decode() if isinstance(refused, bytes) else refused
        return (str(reason) if reason is not None else None), opened is not None

    @staticmethod
    def refused_key(ref: str) -> str:
        return f"breaker:refused:{ref}"

    @staticmethod
    def open_key(ref: str) -> str:
        return f"breaker:open:{ref}"

    def is_open(self, ref: str) -> bool:
        """Whether ``ref`` is cooling down and should be skipped."""
        return bool(self.redis is not None and self.redis.exists(f"breaker:open:{ref}"))

    def failure(self, ref: str) -> None:
        """Count a failure; open the breaker at the threshold."""
        if self.redis is None:
            return
        key = f"breaker:fails:{ref}"
        count = int(self.redis.incr(key))
        self.redis.expire(key, self.cooldown_s * 2)
        if count >= self.threshold:
            self.redis.set(f"breaker:open:{ref}", count, ex=self.cooldown_s)
            self.redis.delete(key)
            log.warning("circuit_opened", model=ref, failures=count, cooldown_s=self.cooldown_s)

    def trip(self, ref: str, *, reason: str, cooldown_s: int = 600) -> None:
        """Take the model out at once: it refused us in a way every call would repeat (401,
        403, 404), so a retried task must not spend another attempt on it."""
        if self.redis is None:
            return
        self.redis.set(f"breaker:refused:{ref}", reason[:500], ex=cooldown_s)
        log.warning("circuit_tripped", model=ref, reason=reason, cooldown_s=cooldown_s)

    def refused(self, ref: str) -> str | None:
        """Why ``ref`` refused us recently (a permanent condition), or None."""
        if self.redis is None:
            return None
        reason = self.redis.get(f"breaker:refused:{ref}")
        return reason.decode() if isinstance(reason, bytes) else None

    @staticmethod
    def fails_key(ref: str) -> str:
        return f"breaker:fails:{ref}"

    def success(self, ref: str) -> None:
        """A success resets the failure count."""
        if self.redis is not None:
            self.redis.delete(f"breaker:fails:{ref}")
