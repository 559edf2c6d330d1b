"""Redis response cache, keyed on the content of the prompt (seed 003 section 3.3).

The key is the stage, the model the router asked for, the endpoint that would answer it (so a
simulator's answer never serves a run against the real provider) and a SHA-256 of the prompt text
and its template version, so two council members asking different models never share an answer, and
a changed template never serves a stale one. A hit keeps the original answer's provenance (model,
simulated). Calls meant to improve on an answer (escalations, second council drafts) do not read
the cache at all (``call_model(read_cache=False)``). TTLs follow seed 003 (classify 30 days, score
7 days, website analysis 1 day, emails 1 hour) and are multiplied by the budget throttle's factor
(x5 from level 4). A hit costs nothing and is recorded in the ledger with ``cache_hit``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from db.enums import Stage
from pipeline.models import Prompt, Route

if TYPE_CHECKING:
    from redis import Redis

DAY = 24 * 3600
TTL_S: dict[Stage, int] = {
    Stage.CLASSIFY: 30 * DAY,
    Stage.SCORE: 7 * DAY,
    Stage.ANALYZE: DAY,
    Stage.DEMO: DAY,
    Stage.PERSONALIZE: 3600,
    Stage.JUDGE: 3600,
}


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer and the model that gave it."""

    text: str
    provider: str
    model: str
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class ResponseCache:
    """Get and put answers; ``multiplier`` reads the current TTL factor (throttle level 4+)."""

    redis: Redis
    multiplier: Callable[[], int] = lambda: 1

    @staticmethod
    def key(stage: Stage, requested: str, prompt: Prompt, endpoint: str) -> str:
        """The cache key for a prompt sent to ``requested`` (``provider:model``) at ``endpoint``."""
        digest = hashlib.sha256(
            "\x00".join((endpoint, prompt.version, prompt.system, prompt.user)).encode()
        ).hexdigest()
        return f"cache:{stage.value}:{requested}:{digest}"

    def get(
        self, stage: Stage, requested: str, prompt: Prompt, endpoint: str
    ) -> CachedAnswer | None:
        """The stored answer, if any and still fresh."""
        raw = self.redis.get(self.key(stage, requested, prompt, endpoint))
        return None if raw is None else self.decode(raw)

    @staticmethod
    def decode(raw: bytes | str) -> CachedAnswer:
        """A stored answer from its raw value (a :meth:`get`, or a peek in another script)."""
        data = json.loads(raw)
        return CachedAnswer(
            str(data["text"]),
            str(data["provider"]),
            str(data["model"]),
            simulated=bool(data.get("simulated", False)),
        )

    def put(
        self,
        stage: Stage,
        requested: str,
        prompt: Prompt,
        text: str,
        route: Route,
        endpoint: str,
        simulated: bool,
        client: Any = None,
    ) -> None:
        """Store an answer for the stage's TTL times the current multiplier (``client``: a
        pipeline, or a stage's queued writes (``budget.reservations.QueuedWrites``), to queue
        the write on instead)."""
        ttl = TTL_S.get(stage, 0) * self.multiplier()
        if ttl <= 0:
            return
        value = json.dumps(
            {"text": text, "provider": route.provider, "model": route.model, "simulated": simulated}
        )
        (client or self.redis).set(self.key(stage, requested, prompt, endpoint), value, ex=ttl)
