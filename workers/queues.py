"""One queue per stage, so a budget pause can stop exactly the stages it means (R4)."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    CLASSIFY = "classify"
    SCORE = "score"
    ANALYZE = "analyze"
    DEMO = "demo"
    PERSONALIZE = "personalize"
    JUDGE = "judge"
    BATCH = "batch"
    OPS = "ops"


ALL_QUEUES: tuple[str, ...] = tuple(q.value for q in Queue)
