"""Atomic budget bookkeeping in Redis (Lua scripts), amounts in integer micro-dollars.

Each budget period is one hash ``{prefix}:p:{scope}:{period}:{start}`` with the fields ``spent``,
``reserved``, ``seq`` (bumped by every settle, for optimistic reconciliation) and ``init`` (set
once the period has been loaded from the ledger). Limits live in one hash so a raised limit applies
to every worker at once. Every open reservation is a field of ``{prefix}:resv`` (``amount|ts|keys``)
so a reservation leaked by a killed worker can be found and dropped by the reconciler.

Scripts run atomically on the Redis server: a reservation checks every period it touches and books
all of them or none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

# KEYS: resv hash, limits hash, the peek keys, the period keys. ARGV: amount, reservation id,
# now, number of peek keys, then (limit field, holdback) per period. A peek key that exists
# (a cached answer, an open circuit breaker: the caller's business) is answered instead of
# reserving, so the caller's checks and the reservation cost one round trip.
_RESERVE = """
local amount = tonumber(ARGV[1])
local m = tonumber(ARGV[4])
for j = 1, m do
  local value = redis.call('GET', KEYS[2 + j])
  if value then return {-4, j, value} end
end
local n = #KEYS - 2 - m
for i = 1, n do
  local key = KEYS[i + 2 + m]
  if redis.call('HEXISTS', key, 'init') == 0 then return {-2, i} end
  local limit = redis.call('HGET', KEYS[2], ARGV[3 + 2 * i])
  if not limit then return {-3, i} end
  local spent = tonumber(redis.call('HGET', key, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', key, 'reserved') or '0')
  local holdback = tonumber(ARGV[4 + 2 * i])
  if spent + reserved + amount > tonumber(limit) - holdback then
    local by_holdback = 0
    if spent + reserved + amount <= tonumber(limit) then by_holdback = 1 end
    return {-1, i, by_holdback}
  end
end
local keys = {}
for i = 1, n do
  redis.call('HINCRBY', KEYS[i + 2 + m], 'reserved', amount)
  keys[i] = KEYS[i + 2 + m]
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1] .. '|' .. ARGV[3] .. '|' .. table.concat(keys, ','))
return {1, 0}
"""

# KEYS: resv hash, ledgered hash, then each settle's period keys, then the keys to SET.
# ARGV: number of settles, number of SETs, then (reservation id, actual amount (0 for a
# release), number of period keys) per settle, then (value, ttl seconds) per SET. A reservation
# a repair already read from the ledger (its cost is in ``spent``) is only forgotten: adding
# ``actual`` again would count the call twice. Returns, per settle, found (1/0) and the spent of
# each of its periods (-1 when not loaded, or when a repair had counted it), so the guard can
# check alerts and the throttle level without reading the periods again. A stage's settles and
# its queued cache writes are therefore one command and one round trip.
_SETTLE = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local a = 3
local k = 3
local out = {}
for s = 1, n do
  local rid = ARGV[a]
  local actual = tonumber(ARGV[a + 1])
  local nk = tonumber(ARGV[a + 2])
  a = a + 3
  if redis.call('HDEL', KEYS[2], rid) == 1 then
    out[#out + 1] = 1
    for i = 1, nk do out[#out + 1] = -1 end
  else
    local entry = redis.call('HGET', KEYS[1], rid)
    local amount = 0
    if entry then
      amount = tonumber(string.match(entry, '^(%d+)'))
      redis.call('HDEL', KEYS[1], rid)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    for i = 0, nk - 1 do
      local key = KEYS[k + i]
      local spent = -1
      if redis.call('HEXISTS', key, 'init') == 1 then
        local reserved = tonumber(redis.call('HGET', key, 'reserved') or '0')
        redis.call('HSET', key, 'reserved', math.max(0, reserved - amount))
        spent = redis.call('HINCRBY', key, 'spent', actual)
        redis.call('HINCRBY', key, 'seq', 1)
      end
      out[#out + 1] = spent
    end
  end
  k = k + nk
end
for s = 1, m do
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ARGV[a + 1])
  k = k + 1
  a = a + 2
end
return out
"""

# KEYS: resv hash, one period key, ledgered hash. ARGV: ledger spent, expected seq ('' = any),
# now, stale seconds, ttl seconds, then the ids of reservations whose ledger row is already
# committed (their cost is in ``spent``; they are dropped, not counted as reserved too).
# Returns -1 when a settle raced the ledger read (caller retries).
_REPAIR = """
local seq = redis.call('HGET', KEYS[2], 'seq') or '0'
if ARGV[2] ~= '' and seq ~= ARGV[2] then return -1 end
local now = tonumber(ARGV[3])
local stale = tonumber(ARGV[4])
for k = 6, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[k]) == 1 then
    redis.call('HSET', KEYS[3], ARGV[k], 1)
    redis.call('EXPIRE', KEYS[3], 86400)
  end
end
local reserved = 0
local entries = redis.call('HGETALL', KEYS[1])
for j = 1, #entries, 2 do
  local amount, ts, keys = string.match(entries[j + 1], '^(%d+)|(%d+)|(.*)$')
  if now - tonumber(ts) > stale then
    redis.call('HDEL', KEYS[1], entries[j])
  elseif string.find(',' .. keys .. ',', ',' .. KEYS[2] .. ',', 1, true) then
    reserved = reserved + tonumber(amount)
  end
end
redis.call('HSET', KEYS[2], 'spent', ARGV[1], 'reserved', reserved, 'init', 1,
  'seq', tonumber(seq) + 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return reserved
"""


@dataclass(frozen=True, slots=True)
class PeriodKey:
    """One period a reservation books against: its Redis key, limit field and holdback."""

    key: str
    limit_field: str
    holdback: int = 0
    """Micro-dollars at the top of the limit this caller may not use (emergency reserve)."""


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """What the reserve script answered."""

    granted: bool
    missing: PeriodKey | None = None
    """A period not yet loaded from the ledger (or a missing limit): repair, then retry."""
    refused: PeriodKey | None = None
    by_holdback: bool = False
    """The refusal only came from the holdback: the full limit still had room."""
    peeked: tuple[int, bytes] | None = None
    """(index, value) of the first peek key that existed: nothing was reserved."""


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    """What the settle script answered."""

    found: bool
    """The reservation was still open (False: already settled, released or dropped)."""
    spent: dict[str, int]
    """Each loaded period's ``spent`` after the settle (empty when a repair had counted it)."""


@dataclass(frozen=True, slots=True)
class PeriodState:
    """Raw counters of one period hash."""

    spent: int
    reserved: int
    seq: str
    loaded: bool
    fields: dict[str, str]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class QueuedWrites:
    """Redis writes queued to run with the settles (``ReservationStore.settle_many``'s
    ``also``): only ``SET`` with a TTL, the one write a stage queues (its cache puts)."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, str | bytes, int]] = []

    def set(self, name: str, value: str | bytes, ex: int) -> None:
        """Queue ``SET name value EX ex``."""
        self.sets.append((name, value, int(ex)))


class ReservationStore:
    """The Lua scripts bound to one Redis client and key prefix."""

    def __init__(self, client: Redis, prefix: str = "leadpipe:budget") -> None:
        self.redis = client
        self.prefix = prefix
        self.resv_key = f"{prefix}:resv"
        self.limits_key = f"{prefix}:limits"
        self.ledgered_key = f"{prefix}:ledgered"
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._repair = client.register_script(_REPAIR)

    def period_key(self, scope: str, period: str, start: str) -> str:
        """The Redis key of one period of one scope (``global`` or ``campaign:<id>``)."""
        return f"{self.prefix}:p:{scope}:{period}:{start}"

    def reserve(
        self,
        rid: str,
        amount: int,
        periods: Sequence[PeriodKey],
        *,
        now: int,
        peek: Sequence[str] = (),
    ) -> ReserveOutcome:
        """Book ``amount`` against every period, or against none.

        ``peek``: keys read first, in order; the first that exists is answered (its value)
        and nothing is reserved.
        """
        argv: list[Any] = [amount, rid, now, len(peek)]
        for p in periods:
            argv += [p.limit_field, p.holdback]
        keys = [self.resv_key, self.limits_key, *peek, *(p.key for p in periods)]
        code, index, *rest = self._reserve(keys=keys, args=argv)
        if int(code) == 1:
            return ReserveOutcome(granted=True)
        if int(code) == -4:
            value = rest[0] if isinstance(rest[0], bytes) else str(rest[0]).encode()
            return ReserveOutcome(granted=False, peeked=(int(index) - 1, value))
        period = periods[int(index) - 1]
        if int(code) == -1:
            return ReserveOutcome(granted=False, refused=period, by_holdback=bool(int(rest[0])))
        return ReserveOutcome(granted=False, missing=period)

    def settle(self, rid: str, actual: int, keys: Sequence[str]) -> SettleOutcome:
        """Move a reservation to spent at ``actual`` (one round trip)."""
        return self.settle_many([(rid, actual, keys)])[0]

    def settle_many(
        self,
        items: Sequence[tuple[str, int, Sequence[str]]],
        also: Callable[[Any], None] | None = None,
    ) -> list[SettleOutcome]:
        """Several settles ``(rid, actual, keys)`` in one script, so one round trip (atomic
        together). ``also`` is given a :class:`QueuedWrites` to queue SETs with a TTL (a
        stage's response-cache writes), run by the same script after the settles."""
        writes = QueuedWrites()
        if also is not None:
            also(writes)
        if not items and not writes.sets:
            return []
        keys: list[str] = [self.resv_key, self.ledgered_key]
        argv: list[Any] = [len(items), len(writes.sets)]
        for rid, actual, periods in items:
            keys += periods
            argv += [rid, actual, len(periods)]
        for key, value, ttl in writes.sets:
            keys.append(key)
            argv += [value, ttl]
        answer = iter(self._settle(keys=keys, args=argv))  # EVALSHA; loads it if Redis lost it
        out = []
        for _rid, _actual, periods in items:
            found = int(next(answer))
            spent = {key: int(next(answer)) for key in periods}
            out.append(
                SettleOutcome(found=bool(found), spent={k: v for k, v in spent.items() if v >= 0})
            )
        return out

    def release(self, rid: str, keys: Sequence[str]) -> bool:
        """Drop a reservation without spending anything; False when it was already gone."""
        return self.settle(rid, 0, keys).found

    def repair(
        self,
        key: str,
        spent: int,
        *,
        expected_seq: str | None,
        now: int,
        stale_s: int,
        ttl_s: int,
        ledgered: Sequence[str] = (),
    ) -> bool:
        """Overwrite ``spent`` from the ledger and recount live reservations.

        ``ledgered``: open reservations whose ledger row was read into ``spent`` (dropped).
        Returns False when a settle happened since ``expected_seq`` was read (read again).
        """
        seq = "" if expected_seq is None else expected_seq
        result = self._repair(
            keys=[self.resv_key, key, self.ledgered_key],
            args=[spent, seq, now, stale_s, ttl_s, *ledgered],
        )
        return int(result) >= 0

    def open_ids(self) -> list[str]:
        """The ids of every open reservation."""
        return [_text(k) for k in self.redis.hkeys(self.resv_key)]

    def state(self, key: str) -> PeriodState:
        """The counters of one period."""
        return self._state(self.redis.hgetall(key))

    def states(self, keys: Sequence[str]) -> list[PeriodState]:
        """The counters of several periods in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [self._state(raw) for raw in pipe.execute()]

    @staticmethod
    def _state(hash_: Mapping[Any, Any]) -> PeriodState:
        raw = {_text(k): _text(v) for k, v in hash_.items()}
        return PeriodState(
            spent=int(raw.get("spent", 0)),
            reserved=int(raw.get("reserved", 0)),
            seq=raw.get("seq", "0"),
            loaded="init" in raw,
            fields=raw,
        )

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Write limit fields (micro-dollars) read by the reserve script."""
        if limits:
            mapping: dict[str | bytes, bytes | str | int] = dict(limits.items())
            self.redis.hset(self.limits_key, mapping=mapping)  # type: ignore[arg-type]

    def limits(self) -> dict[str, int]:
        """Every limit field currently in Redis."""
        return {_text(k): int(v) for k, v in self.redis.hgetall(self.limits_key).items()}

    def mark(self, key: str, field: str) -> bool:
        """Set a flag field once; True only for the caller that set it (alerts, exhaustion)."""
        return bool(self.redis.hsetnx(key, field, 1))

    def unmark(self, key: str, *fields: str) -> None:
        """Clear flag fields."""
        if fields:
            self.redis.hdel(key, *fields)
