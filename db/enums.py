"""Persisted vocabularies."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    CLASSIFY = "classify"
    SCORE = "score"
    ANALYZE = "analyze"
    DEMO = "demo"
    PERSONALIZE = "personalize"
    JUDGE = "judge"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class StageStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class LeadStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    HELD = "held"
    FAILED = "failed"


class Tier(StrEnum):
    SMB = "smb"
    MID_MARKET = "mid_market"
    ENTERPRISE = "enterprise"


class CallStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    INVALID_OUTPUT = "invalid_output"
    """Answered and billed, but outside the stage's contract (the answer is kept)."""


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class EmailStatus(StrEnum):
    APPROVED = "approved"
    HELD = "held"
    REJECTED = "rejected"
