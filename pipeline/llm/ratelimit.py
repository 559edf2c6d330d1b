"""Shared rate limits per model and per provider, held in Redis across every worker and host.

Configured in the routing table (``[rate_limits]``, see ``routing.toml``): requests per minute,
tokens per minute and, for self-hosted endpoints, requests in flight. Nothing is limited unless
configured, and a call to a model with no limit on it or its provider costs no Redis step.

Each call is admitted by ONE atomic Redis step: a Lua script (registered once per process with
``register_script``; redis-py sends ``EVALSHA``) that reads the server's clock, checks every
limit on the call's model and provider with GCRA (the generic cell rate algorithm: one
"theoretical arrival time" per bucket) and either

- admits the call now, or at a time it reserves for it no more than ``max_wait_s`` ahead (the
  caller sleeps until then: callers queue in the bucket's timeline instead of racing), or
- refuses it with the wait, and the gateway raises :class:`RateLimited`: the task is sent again
  after a countdown, to the same model. A limited call never falls up the ladder.

Requests per minute are a hard cap over ANY 60-second window: with ``burst`` b the steady
spacing is 60 s / (N - b + 1) (plus 1 % headroom), so b calls at once plus the ones that
follow never pass N in a minute. Tokens are charged as the prompt estimate plus ``max_tokens``
(as OpenAI counts them at admission), from a bucket that holds a minute's worth.
``max_concurrent`` keeps a set of leases (a dead worker's lease expires); a call holding one
releases it when it ends.

A 429 from the provider pushes a shared cooldown for that model (``Retry-After``, or a default),
which every worker's next admission honours. A model no limit covers has no admission step: its
calls read the cooldown key with their budget reservation instead (``peek_key``), so a 429 holds
every worker back from it too, at no extra round trip.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.errors import ConfigError, RateLimited

if TYPE_CHECKING:
    from redis import Redis

log = structlog.get_logger(__name__)

PREFIX = "leadpipe:rl:"
DEFAULT_MAX_WAIT_S = 10.0
"""Longest a worker thread sleeps for a slot before the task is deferred instead."""
DEFAULT_429_COOLDOWN_S = 5.0
"""Cooldown after a 429 that carries no ``Retry-After``."""
MAX_DEFER_S = 300.0
"""Longest countdown of a deferred task (far below the broker's visibility timeout)."""
CONCURRENCY_POLL_S = 0.25
LEASE_S = 600.0
"""A concurrency lease outlives any call (provider timeouts are far shorter); a dead worker's
lease frees itself after this."""
HEADROOM = 0.01
"""Requests are spaced 1 % wider than the limit allows: the (N+1)th call of a minute then
goes 0.6 s after the window, so jitter between our clock and the provider's count (a thread
scheduled late, a slower connection) never puts N+1 into one of the provider's minutes."""
LIMIT_KEYS = frozenset({"requests_per_min", "tokens_per_min", "max_concurrent", "burst"})

# KEYS: [1] the model's 429 cooldown, then ng GCRA buckets, then nc concurrency sets.
# ARGV: max_wait_ms, ng, nc, lease token, lease_ms, then (interval_ms, tolerance_ms, cost) per
# bucket, then the cap of each concurrency set.
# Returns {admitted 0|1, wait_ms (-1: concurrency full, poll), index of the binding key}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max_wait = tonumber(ARGV[1])
local ng = tonumber(ARGV[2])
local nc = tonumber(ARGV[3])
local send, why = now, 0
local cool = tonumber(redis.call('GET', KEYS[1]) or '0')
if cool > send then send, why = cool, 1 end
local tats = {}
for i = 1, ng do
  local b = 5 + (i - 1) * 3
  local interval, tol, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local tat = tonumber(redis.call('GET', KEYS[1 + i]) or '0')
  tats[i] = tat
  local allow = math.max(tat, now) + interval * cost - tol
  if allow > send then send, why = allow, 1 + i end
end
local wait = send - now
if wait > max_wait then return {0, math.ceil(wait), why} end
for j = 1, nc do
  local key = KEYS[1 + ng + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[5 + ng * 3 + j]) then
    return {0, -1, 1 + ng + j}
  end
end
local lease = tonumber(ARGV[5])
for j = 1, nc do
  local key = KEYS[1 + ng + j]
  redis.call('ZADD', key, send + lease, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(wait + lease))
end
for i = 1, ng do
  local b = 5 + (i - 1) * 3
  local new = math.max(tats[i], send) + tonumber(ARGV[b + 1]) * tonumber(ARGV[b + 3])
  redis.call('SET', KEYS[1 + i], string.format('%.3f', new), 'PX', math.ceil(new - now) + 1000)
end
return {1, math.ceil(wait), why}
"""

# KEYS[1]: a model's cooldown; ARGV[1]: milliseconds. Keeps the later of the two deadlines.
PENALIZE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ms = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > cur then
  redis.call('SET', KEYS[1], string.format('%.3f', now + ms), 'PX', math.ceil(ms) + 1000)
end
return math.ceil(math.max(cur, now + ms) - now)
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """The limits of one model or provider (None: not limited on that axis)."""

    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    max_concurrent: int | None = None
    burst: int = 1
    """Requests let through at once; the steady spacing shrinks so no minute passes N."""

    def buckets(self, tokens: int) -> list[tuple[str, float, float, float]]:
        """(suffix, interval ms per unit, tolerance ms, cost) of each GCRA bucket for a call."""
        out = []
        if self.requests_per_min is not None:
            interval = self.request_interval_ms()
            out.append(("req", interval, interval * self.burst, 1.0))
        if self.tokens_per_min is not None:
            interval = 60_000 / self.tokens_per_min
            cost = float(min(max(tokens, 1), self.tokens_per_min))  # never more than a minute's
            out.append(("tok", interval, interval * self.tokens_per_min, cost))
        return out

    def request_interval_ms(self) -> float:
        """Steady spacing of requests: no 60 s window passes N, with ``HEADROOM``."""
        assert self.requests_per_min is not None
        return 60_000 * (1 + HEADROOM) / (self.requests_per_min - self.burst + 1)

    def describe(self) -> str:
        parts = []
        if self.requests_per_min is not None:
            burst = f" (burst {self.burst})" if self.burst > 1 else ""
            parts.append(f"{self.requests_per_min} req/min{burst}")
        if self.tokens_per_min is not None:
            parts.append(f"{self.tokens_per_min} tok/min")
        if self.max_concurrent is not None:
            parts.append(f"{self.max_concurrent} in flight")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Every configured limit: by model ref (``provider:model``) and by provider name."""

    models: Mapping[str, Limit] = field(default_factory=dict)
    providers: Mapping[str, Limit] = field(default_factory=dict)
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    def scopes(self, ref: str) -> list[tuple[str, Limit]]:
        """The limited scopes a call to ``ref`` counts against: its model, its provider."""
        provider = ref.partition(":")[0]
        found = []
        if ref in self.models:
            found.append((f"model:{ref}", self.models[ref]))
        if provider in self.providers:
            found.append((f"provider:{provider}", self.providers[provider]))
        return found

    def all_scopes(self) -> list[tuple[str, Limit]]:
        return [(f"model:{r}", lim) for r, lim in sorted(self.models.items())] + [
            (f"provider:{p}", lim) for p, lim in sorted(self.providers.items())
        ]


def parse_rate_limits(doc: Mapping[str, Any], aliases: Mapping[str, str], where: str) -> RateLimits:
    """Validate the routing table's ``[rate_limits]`` table.

    Raises:
        ConfigError: an unknown key, alias or provider, or a value that is not a positive
            integer, naming the entry (``rate_limits.models.gpt4o_mini.requests_per_min``).
    """
    unknown = set(doc) - {"models", "providers", "max_wait_s"}
    if unknown:
        raise ConfigError(f"{where}: rate_limits: unknown key(s) {sorted(unknown)}")
    max_wait = doc.get("max_wait_s", DEFAULT_MAX_WAIT_S)
    if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or max_wait < 0:
        raise ConfigError(f"{where}: rate_limits.max_wait_s: want seconds >= 0, got {max_wait!r}")
    models: dict[str, Limit] = {}
    for alias, body in _table(doc, "models", where).items():
        ref = aliases.get(alias, alias)
        if ":" not in ref:
            raise ConfigError(f"{where}: rate_limits.models: unknown model alias {alias!r}")
        models[ref] = _limit(body, f"rate_limits.models.{alias}", where)
    providers: dict[str, Limit] = {}
    for name, body in _table(doc, "providers", where).items():
        if ":" in name or not name:
            raise ConfigError(f"{where}: rate_limits.providers: {name!r} is not a provider name")
        providers[name] = _limit(body, f"rate_limits.providers.{name}", where)
    return RateLimits(models, providers, float(max_wait))


def _table(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: rate_limits.{key} must be a table")
    return value


def _limit(body: object, name: str, where: str) -> Limit:
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: {name} must be a table, e.g. {{ requests_per_min = 500 }}")
    unknown = set(body) - LIMIT_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: {name}: unknown key(s) {sorted(unknown)}; known: {sorted(LIMIT_KEYS)}"
        )
    values: dict[str, int] = {}
    for key, value in body.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {name}.{key}: want an integer >= 1, got {value!r}")
        values[key] = value
    if set(values) <= {"burst"}:
        raise ConfigError(f"{where}: {name}: no limit set ({sorted(LIMIT_KEYS - {'burst'})})")
    limit = Limit(**values)
    if "burst" in values and limit.requests_per_min is None:
        raise ConfigError(f"{where}: {name}.burst: only applies with requests_per_min")
    if limit.requests_per_min is not None and limit.burst > limit.requests_per_min:
        raise ConfigError(f"{where}: {name}.burst: {limit.burst} > requests_per_min")
    return limit


@dataclass(frozen=True, slots=True)
class Permit:
    """An admitted call: how long it waited, and the concurrency lease it holds (if any)."""

    waited_s: float = 0.0
    lease: str | None = None
    lease_keys: tuple[str, ...] = ()


def cooldown_key(ref: str) -> str:
    return f"{PREFIX}cool:{ref}"


class RateLimiter:
    """Admits calls against the shared limits; one Redis step per admitted call."""

    def __init__(
        self,
        redis: Redis,
        limits: RateLimits,
        *,
        sleep: Callable[[float], None] = time.sleep,
        lease_s: float = LEASE_S,
        observe: Callable[..., None] | None = None,
    ) -> None:
        """``observe(model, outcome, waited_s=0.0)`` counts held-back calls (the gateway
        passes ``pipeline.metrics.observe_rate_limit``; the routing table stays import-light)."""
        self.redis = redis
        self._observe = observe or (lambda *_, **__: None)
        self.limits = limits
        self._sleep = sleep
        self._lease_ms = int(lease_s * 1000)
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._penalize = redis.register_script(PENALIZE_LUA)

    def admit(self, ref: str, tokens: int) -> Permit | None:
        """Wait for a slot for one call to ``ref`` charging ``tokens``, or raise.

        Returns None (no Redis step) when neither the model nor its provider is limited.

        Raises:
            RateLimited: the next slot is more than ``max_wait_s`` away; its ``retry_after_s``
                is a countdown, spread so deferred calls do not all come back at once.
        """
        scopes = self.limits.scopes(ref)
        if not scopes:
            return None
        keys, args, names = self._plan(ref, scopes, tokens)
        max_wait = self.limits.max_wait_s
        token = uuid.uuid4().hex if args[2] else ""
        polled = 0.0
        while True:
            admitted, wait_ms, why = self._acquire(
                keys=keys, args=[int(max_wait * 1000), *args[1:3], token, *args[3:]]
            )
            if admitted:
                waited = max(0, int(wait_ms)) / 1000
                if waited > 0:
                    self._sleep(waited)
                if waited + polled > 0:
                    self._observe(ref, "waited", waited + polled)
                lease_keys = tuple(keys[1 + args[1] :])
                return Permit(waited + polled, token or None, lease_keys)
            scope = names[int(why)]
            if int(wait_ms) < 0 and polled + CONCURRENCY_POLL_S <= max_wait:
                self._sleep(CONCURRENCY_POLL_S)  # concurrency full: a slot frees when a call ends
                polled += CONCURRENCY_POLL_S
                continue
            raise self._deferred(ref, scope, max(int(wait_ms), 0) / 1000)

    def release(self, permit: Permit | None) -> None:
        """Give back a concurrency lease (no Redis step for a call that holds none)."""
        if permit is None or permit.lease is None:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in permit.lease_keys:
            pipe.zrem(key, permit.lease)
        pipe.execute()

    def penalize(self, ref: str, retry_after_s: float | None) -> float:
        """A 429: every worker holds calls to ``ref`` for ``retry_after_s`` (or a default).

        Returns the seconds until the model's cooldown ends (the later of old and new).
        """
        seconds = retry_after_s if retry_after_s else DEFAULT_429_COOLDOWN_S
        left = int(self._penalize(keys=[cooldown_key(ref)], args=[int(seconds * 1000)]))
        log.warning("rate_limit_429", model=ref, cooldown_s=round(left / 1000, 2))
        self._observe(ref, "429")
        return left / 1000

    def peek_key(self, ref: str) -> str | None:
        """The 429 cooldown key a call to ``ref`` reads with its budget reservation (the same
        round trip), or None when a limit covers ``ref``: its admission reads the key itself."""
        return None if self.limits.scopes(ref) else cooldown_key(ref)

    def cooling(self, ref: str, until: bytes) -> None:
        """A call found ``ref`` cooling down after a 429 (``until``: the key's deadline, ms).

        Sleeps the rest out when it is no longer than ``max_wait_s`` (the caller then sends).

        Raises:
            RateLimited: the cooldown lasts longer; the task goes later, to the same model.
        """
        wait = max(0.0, float(until) / 1000 - time.time())
        scope = f"429 cooldown of {ref}"
        if wait <= self.limits.max_wait_s:
            if wait > 0:
                self._sleep(wait)
                self._observe(ref, "waited", wait)
            return
        raise self._deferred(ref, scope, wait)

    def _deferred(self, ref: str, scope: str, wait: float) -> RateLimited:
        """The error that sends a call ``wait`` seconds from its slot later: a countdown that
        lands it near the slot, spread so deferred calls do not all come back at once."""
        max_wait = self.limits.max_wait_s
        countdown = min(MAX_DEFER_S, max(wait - max_wait, 0) + random.uniform(0, max_wait))
        log.info("rate_limited", model=ref, scope=scope, wait_s=round(wait, 2))
        self._observe(ref, "deferred")
        return RateLimited(scope, max(countdown, CONCURRENCY_POLL_S))

    def _plan(
        self, ref: str, scopes: list[tuple[str, Limit]], tokens: int
    ) -> tuple[list[str], list[Any], list[str]]:
        """Redis keys, script arguments and, per key index, the scope named when it binds."""
        keys, names = [cooldown_key(ref)], ["", f"429 cooldown of {ref}"]
        buckets: list[Any] = []
        caps: list[int] = []
        conc_keys: list[str] = []
        conc_names: list[str] = []
        for scope, limit in scopes:
            for suffix, interval, tolerance, cost in limit.buckets(tokens):
                keys.append(f"{PREFIX}{scope}:{suffix}")
                names.append(f"{scope} {suffix}/min")
                buckets += [f"{interval:.6f}", f"{tolerance:.6f}", f"{cost:.0f}"]
            if limit.max_concurrent is not None:
                conc_keys.append(f"{PREFIX}{scope}:conc")
                conc_names.append(f"{scope} in flight")
                caps.append(limit.max_concurrent)
        ng = len(keys) - 1
        args: list[Any] = [0, ng, len(conc_keys), self._lease_ms, *buckets, *caps]
        return keys + conc_keys, args, names + conc_names

    def state(self) -> list[dict[str, Any]]:
        """Every configured scope with its limits and what Redis holds for it now.

        ``next_free_s``: when the next request may go (0: at once; more: calls are booked
        ahead); ``tokens_free``: tokens a call may take now; ``in_flight``: leases held.
        """
        now = _redis_now_ms(self.redis)
        rows = []
        for scope, limit in self.limits.all_scopes():
            base = f"{PREFIX}{scope}"
            req, tok = self.redis.get(f"{base}:req"), self.redis.get(f"{base}:tok")
            in_flight = None
            if limit.max_concurrent is not None:
                in_flight = int(self.redis.zcount(f"{base}:conc", now, "+inf"))
            rows.append(
                {
                    "scope": scope,
                    "limits": limit.describe(),
                    "requests_per_min": limit.requests_per_min,
                    "tokens_per_min": limit.tokens_per_min,
                    "max_concurrent": limit.max_concurrent,
                    "burst": limit.burst,
                    "next_free_s": _next_free_s(req, now, limit),
                    "tokens_free": _tokens_free(tok, now, limit),
                    "in_flight": in_flight,
                }
            )
        return rows

    def cooldowns(self) -> dict[str, float]:
        """Models held back by a recent 429 -> seconds left (scanned; for status only)."""
        now = _redis_now_ms(self.redis)
        out = {}
        for key in self.redis.scan_iter(match=f"{PREFIX}cool:*", count=500):
            raw = self.redis.get(key)
            name = key.decode() if isinstance(key, bytes) else str(key)
            if raw is not None and float(raw) > now:
                out[name.removeprefix(f"{PREFIX}cool:")] = round((float(raw) - now) / 1000, 2)
        return out


def _redis_now_ms(redis: Redis) -> float:
    sec, usec = redis.time()
    return float(sec) * 1000 + float(usec) / 1000


def _next_free_s(raw: Any, now: float, limit: Limit) -> float | None:
    """Seconds until the request bucket lets one more call through (0: now)."""
    if limit.requests_per_min is None:
        return None
    if raw is None:
        return 0.0
    interval = limit.request_interval_ms()
    return round(max(0.0, float(raw) - now - interval * limit.burst + interval) / 1000, 2)


def _tokens_free(raw: Any, now: float, limit: Limit) -> int | None:
    """Tokens the bucket would let one call take now (a full bucket is a minute's worth)."""
    if limit.tokens_per_min is None:
        return None
    booked_ms = max(0.0, float(raw) - now) if raw is not None else 0.0
    return max(0, int(limit.tokens_per_min - booked_ms * limit.tokens_per_min / 60_000))
