"""Every failure leadpipe knows how to classify.

PipelineError
├── TransientError               retried with backoff; may succeed next time
│   ├── ProviderUnavailable      HTTP 429/5xx, timeouts, connection errors
│   ├── RateLimited              over a shared rate limit (or a 429): same model, later
│   ├── ReservationContended     budget bookkeeping briefly unavailable
│   └── AllRoutesFailed          every model in a fallback chain failed transiently
└── PermanentError               fails fast (or parks the lead); retrying cannot help
    ├── ProviderRejected         HTTP 4xx other than 429 (bad key, bad request)
    ├── InvalidLLMOutput         model output unusable after one repair attempt
    │   └── NoValidAnswer        no model of the chain gave a valid answer (or all refused)
    ├── BudgetExhausted          no budget left for this call
    ├── LeadNotFound             the lead id no longer exists
    ├── FetchRefused             a website URL points at a forbidden address
    └── ConfigError              settings or routing table are invalid
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error leadpipe raises on purpose."""


class TransientError(PipelineError):
    """A failure that may go away on retry."""


class PermanentError(PipelineError):
    """A failure that retrying cannot fix."""


class ProviderUnavailable(TransientError):
    """The provider could not answer now (rate limit, server error, timeout)."""

    def __init__(
        self,
        provider: str,
        reason: str,
        *,
        retry_after_s: float | None = None,
        timeout: bool = False,
        status_code: int | None = None,
    ) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.timeout = timeout
        """A slow answer, not a broken model: it does not count towards the circuit breaker."""
        self.status_code = status_code
        """The HTTP status when the provider answered (429: rate limited), else None."""


class RateLimited(TransientError):
    """A shared rate limit (``llm/ratelimit.py``) or the provider's 429 says: not now.

    The call goes to the same model later (the task is sent again after ``retry_after_s``);
    it never falls up the ladder to a dearer model.
    """

    def __init__(self, scope: str, retry_after_s: float, *, refused: bool = False) -> None:
        super().__init__(f"rate limited: {scope}: retry in {retry_after_s:.1f}s")
        self.scope = scope
        self.retry_after_s = retry_after_s
        self.refused = refused
        """The provider answered 429 (our own limit did not stop the call): counts as a retry,
        so a model that refuses for good (a spent quota) parks the lead with the reason."""


class ReservationContended(TransientError):
    """Budget reservation state is busy or unreachable."""


class ProviderRejected(PermanentError):
    """The provider refused the request itself."""

    def __init__(self, provider: str, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.status_code = status_code


class InvalidLLMOutput(PermanentError):
    """The model's answer could not be parsed into the stage's schema."""


class NoValidAnswer(InvalidLLMOutput):
    """Every model of the chain answered outside the stage's contract or refused the request.

    Raised after each model had its one repair attempt; stages with a deterministic answer fall
    back to it, the others park the lead with ``reason``.
    """


class AllRoutesFailed(TransientError):
    """Every model in the fallback chain failed with a transient error."""


class BudgetExhausted(PermanentError):
    """The budget cannot cover this call."""


class LeadNotFound(PermanentError):
    """The lead id does not exist."""


class FetchRefused(PermanentError):
    """A website fetch was refused (private address, bad scheme, too many redirects)."""


class ConfigError(PermanentError):
    """Settings or the routing table are invalid."""
