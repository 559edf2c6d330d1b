"""Budgets that cannot be overspent: reservations, alerts, throttle level, reconciliation.

Before every model call the gateway reserves the call's maximum cost (prompt tokens estimated,
plus ``max_output_tokens``, at catalogue price) against every period that applies, atomically
in Redis (``db/reservations.py``); it settles the real cost afterwards or releases on failure.
Spend can therefore exceed a limit only by what a call costs beyond its own reservation. The
``llm_calls`` ledger stays the source of truth: :meth:`BudgetGuard.reconcile` rebuilds Redis from
it (periodically, and at once when a period is missing, e.g. after a Redis restart).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, overload

import structlog
from sqlalchemy.orm import Session, sessionmaker

from db.session import session_scope
from pipeline.budget import store as budget_db
from pipeline.budget.models import (
    BudgetConfig,
    BudgetRefused,
    BudgetStatus,
    Peeked,
    PeriodStatus,
    Reservation,
)
from pipeline.budget.reservations import PeriodKey, PeriodState, ReservationStore
from pipeline.budget.throttle import (
    Period,
    Window,
    crossed,
    from_micros,
    levels_between,
    throttle_level,
    to_micros,
    usage_pct,
    window,
)
from pipeline.liveness import worker_id

__all__ = [
    "BudgetConfig",
    "BudgetGuard",
    "BudgetRefused",
    "BudgetStatus",
    "Peeked",
    "PeriodStatus",
    "Reservation",
]
log = structlog.get_logger(__name__)
LevelHook = Callable[[int, int, str], None]
"""Called with (old level, new level, reason) when the throttle level changes."""
Notify = Callable[[dict[str, Any]], None]
"""Delivers an alert payload to the webhook (from a Celery task; must not block)."""
ENTERPRISE = "enterprise"
_STATUS_TTL_S = 1.0
_LIMITS_TTL_S = 2.0
"""Limits are cached per process this long: the reserve script reads the live ones itself; the
cache only says which periods apply and what a settled spend means for alerts and the level."""
_REPAIR_TRIES = 5
_KEYS_KEPT = 1024
"""Period-key sets kept per process (one per campaign and tier seen): a bound, not a tuning."""


class BudgetGuard:
    """Reserve, settle, release; alert and throttle. One per process, shared by its threads."""

    def __init__(
        self,
        store: ReservationStore,
        session_factory: sessionmaker[Session],
        config: BudgetConfig,
        *,
        on_level: LevelHook | None = None,
        notify: Notify | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.config = config
        self._factory = session_factory
        self._on_level = on_level
        self._notify = notify
        self._clock = clock
        self._cached: tuple[float, BudgetStatus] | None = None
        self._limits: tuple[float, dict[str, int]] | None = None
        self._reconciling = threading.Lock()
        self._known_level: int | None = None
        """The level this process last saw applied (None: check at the first settle)."""
        self._alerted: set[tuple[str, Decimal]] = set()
        self._exhausted: frozenset[str] = frozenset()
        self._keys: dict[
            tuple[int | None, str | None],
            tuple[dict[str, int], dt.datetime, dt.datetime, list[PeriodKey]],
        ] = {}
        """Period keys per (campaign, tier): the limits they were built from and the span of
        time they hold for (``_period_keys``)."""

    # -- reservations -------------------------------------------------------------------------

    @overload
    def reserve(
        self, amount: Decimal, *, campaign_id: int | None = None, tier: str | None = None
    ) -> Reservation: ...

    @overload
    def reserve(
        self,
        amount: Decimal,
        *,
        campaign_id: int | None = None,
        tier: str | None = None,
        peek: Sequence[str],
    ) -> Reservation | Peeked: ...

    def reserve(
        self,
        amount: Decimal,
        *,
        campaign_id: int | None = None,
        tier: str | None = None,
        peek: Sequence[str] = (),
    ) -> Reservation | Peeked:
        """Book ``amount`` against every applicable period, or raise.

        Non-enterprise leads may not use the last ``emergency_reserve`` dollars of the day.
        ``peek``: keys checked first in the same round trip (a cached answer, an open circuit
        breaker); the first that exists is returned as :class:`Peeked` and nothing is booked.

        Raises:
            BudgetRefused: some period cannot cover ``amount``.
        """
        # The worker id prefix lets the recovery loop drop a dead worker's reservations at once.
        micros, rid = to_micros(amount), f"{worker_id()}/{uuid.uuid4().hex}"
        for _ in range(_REPAIR_TRIES):
            periods = self._period_keys(campaign_id, tier)
            outcome = self.store.reserve(rid, micros, periods, now=int(time.time()), peek=peek)
            if outcome.peeked is not None:
                return Peeked(*outcome.peeked)
            if outcome.granted:
                return Reservation(rid, micros, tuple(p.key for p in periods))
            if outcome.refused is not None:
                self._refused(outcome.refused, amount, by_holdback=outcome.by_holdback)
            self._reconcile_once()  # a period or limit is missing: Redis lost it, rebuild it
        raise BudgetRefused(
            "budget state could not be loaded",
            retry_after_s=self.config.park_retry_s,
            period="",
            scope="",
        )

    def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Replace a reservation with the call's real cost, then check alerts and level.

        One round trip: the settle script answers each period's new spend, and the full
        :meth:`check` runs only when that crosses an alert threshold or changes the level.
        """
        actual_micros = to_micros(actual)
        if actual_micros > reservation.micros:
            log.warning("budget_overrun", reserved=str(reservation.amount_usd), actual=str(actual))
        outcome = self.store.settle(reservation.rid, actual_micros, reservation.keys)
        if self._needs_check(outcome.spent):
            self.check()

    def settle_many(
        self,
        settled: Sequence[tuple[Reservation, Decimal]],
        also: Callable[[Any], None] | None = None,
    ) -> None:
        """:meth:`settle` for several reservations in one round trip (a stage's calls, after
        its ledger rows committed); ``also`` queues SETs with a TTL on the same round trip
        (``reservations.QueuedWrites``)."""
        items = []
        for reservation, actual in settled:
            micros = to_micros(actual)
            if micros > reservation.micros:
                log.warning(
                    "budget_overrun", reserved=str(reservation.amount_usd), actual=str(actual)
                )
            items.append((reservation.rid, micros, reservation.keys))
        spent: dict[str, int] = {}
        for outcome in self.store.settle_many(items, also):
            for key, micros in outcome.spent.items():
                spent[key] = max(micros, spent.get(key, 0))
        if settled and self._needs_check(spent):
            self.check()

    def _needs_check(self, spent: dict[str, int]) -> bool:
        """Whether a settled spend crossed an alert threshold or moved the throttle level."""
        if self._known_level is None:
            return True
        limits = self._cached_limits()
        top = Decimal(0)
        for key, micros in spent.items():
            field = self._field_of(key)
            if field is None or field not in limits:
                return True  # a period this process knows nothing about: look properly
            pct = usage_pct(micros, limits[field], exhausted=key in self._exhausted)
            if any(
                (key, t) not in self._alerted for t in crossed(pct, self.config.alert_thresholds)
            ):
                return True
            if field.startswith("global:"):
                top = max(top, pct)
        return throttle_level(top, self.config.throttle_thresholds) != self._known_level

    def _field_of(self, key: str) -> str | None:
        """``global:daily`` for ``{prefix}:p:global:daily:2026-12-02``."""
        head = f"{self.store.prefix}:p:"
        if not key.startswith(head):
            return None
        return key.removeprefix(head).rsplit(":", 1)[0]

    def _cached_limits(self) -> dict[str, int]:
        cached = self._limits
        if cached is not None and time.monotonic() - cached[0] < _LIMITS_TTL_S:
            return cached[1]
        return self._read_limits()

    def _read_limits(self) -> dict[str, int]:
        limits = self.store.limits()
        self._limits = (time.monotonic(), limits)
        return limits

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back (the call failed and cost nothing)."""
        self.store.release(reservation.rid, reservation.keys)

    def _reconcile_once(self) -> None:
        """Rebuild the periods, once per process: threads that find them missing at the same
        moment (a fresh day, a Redis restart) wait for the first one's rebuild and retry."""
        if self._reconciling.acquire(blocking=False):
            try:
                self.reconcile()
            finally:
                self._reconciling.release()
        else:
            with self._reconciling:
                pass

    def _refused(self, period: PeriodKey, amount: Decimal, *, by_holdback: bool) -> None:
        scope, name = period.limit_field.rsplit(":", 1)
        if not by_holdback and self.store.mark(period.key, "exhausted"):
            log.warning("budget_exhausted", scope=scope, period=name, refused_usd=str(amount))
        if not by_holdback:
            self.check()
        why = "emergency reserve kept for enterprise leads" if by_holdback else "limit reached"
        raise BudgetRefused(
            f"{scope} {name} budget cannot cover ${amount} ({why})",
            retry_after_s=self.config.park_retry_s,
            period=name,
            scope=scope,
        )

    def _period_keys(self, campaign_id: int | None, tier: str | None) -> list[PeriodKey]:
        """The periods a reservation books against, kept while the limits (cached, above) are
        the same and ``now`` stays inside every window they were computed for."""
        limits = self._cached_limits()
        now = self._clock()
        cached = self._keys.get((campaign_id, tier))
        if cached is not None:
            seen, start, end, known = cached
            if seen is limits and start <= now < end:
                return known
        reserve = 0 if tier == ENTERPRISE else to_micros(self.config.emergency_reserve)
        keys: list[PeriodKey] = []
        wins: list[Window] = []
        for scope in self._scopes(limits, campaign_id):
            for period in Period:
                field = f"{scope}:{period.value}"
                if scope != "global" and field not in limits:
                    continue
                win = window(period, now, self.config.timezone)
                wins.append(win)
                hold = reserve if (scope, period) == ("global", Period.DAILY) else 0
                key = self.store.period_key(scope, period.value, win.label)
                keys.append(PeriodKey(key, field, min(hold, limits.get(field, 0))))
        if wins:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            start, end = max(w.start for w in wins), min(w.end for w in wins)
            self._keys[(campaign_id, tier)] = (limits, start, end, keys)
        return keys

    @staticmethod
    def _scopes(limits: dict[str, int], campaign_id: int | None) -> list[str]:
        scopes = ["global"]
        if campaign_id is not None and any(
            f.startswith(f"campaign:{campaign_id}:") for f in limits
        ):
            scopes.append(f"campaign:{campaign_id}")
        return scopes

    # -- status, alerts, throttle ------------------------------------------------------------

    def status(self, *, fresh: bool = False) -> BudgetStatus:
        """Every current period and the throttle level (cached for a second unless ``fresh``)."""
        cached = self._cached
        if not fresh and cached is not None and time.monotonic() - cached[0] < _STATUS_TTL_S:
            return cached[1]
        limits = self._read_limits() if fresh else self._cached_limits()
        if not all(f"global:{p.value}" in limits for p in Period):
            self.reconcile()
            limits = self._read_limits()
        wanted = [
            (scope, period)
            for scope in sorted({f.rsplit(":", 1)[0] for f in limits}, key=lambda s: s != "global")
            for period in Period
            if f"{scope}:{period.value}" in limits
        ]
        wins = [window(p, self._clock(), self.config.timezone) for _, p in wanted]
        keys = [
            self.store.period_key(s, p.value, w.label)
            for (s, p), w in zip(wanted, wins, strict=True)
        ]
        states = self.store.states(keys)  # one round trip for every period
        found = tuple(
            self._period_status(scope, win, key, state, limits[f"{scope}:{win.period.value}"])
            for (scope, _), win, key, state in zip(wanted, wins, keys, states, strict=True)
        )
        glob = [p for p in found if p.scope == "global"]
        top = max((p.pct for p in glob), default=Decimal(0))
        status = BudgetStatus(
            periods=found,
            throttle_level=throttle_level(top, self.config.throttle_thresholds),
            exhausted=any(p.exhausted for p in glob),
        )
        self._cached = (time.monotonic(), status)
        return status

    @staticmethod
    def _period_status(
        scope: str, win: Window, key: str, state: PeriodState, limit: int
    ) -> PeriodStatus:
        exhausted = "exhausted" in state.fields
        return PeriodStatus(
            scope=scope,
            window=win,
            key=key,
            limit_usd=from_micros(limit),
            spent_usd=from_micros(state.spent),
            reserved_usd=from_micros(state.reserved),
            pct=usage_pct(state.spent, limit, exhausted=exhausted),
            exhausted=exhausted,
        )

    def throttle_level(self) -> int:
        """The current level 0..5 (cached for a second): what the router reads."""
        return self.status().throttle_level

    def check(self) -> BudgetStatus:
        """Fire alerts for thresholds crossed this period and apply a throttle level change."""
        status = self.status(fresh=True)
        for p in status.periods:
            fresh = [
                threshold
                for threshold in crossed(p.pct, self.config.alert_thresholds)
                if self.store.mark(p.key, f"alert:{threshold}")
            ]
            if fresh:  # several thresholds crossed by one change: one alert, the highest
                self._alert(p, fresh)
        raw = self.store.redis.getset(f"{self.store.prefix}:level", status.throttle_level)
        old = int(raw) if raw is not None else 0
        if old != status.throttle_level:
            self._level_changed(old, status)
        self._remember(status)
        return status

    def _remember(self, status: BudgetStatus) -> None:
        """What ``check`` applied, so a settle that changes nothing needs no second look."""
        self._known_level = status.throttle_level
        self._exhausted = frozenset(p.key for p in status.periods if p.exhausted)
        self._alerted = {
            (p.key, t) for p in status.periods for t in crossed(p.pct, self.config.alert_thresholds)
        }

    def _alert(self, p: PeriodStatus, thresholds: list[Decimal]) -> None:
        """Record every crossed threshold; log and notify once, for the highest of them."""
        pcts = [int(t * 100) for t in sorted(thresholds)]
        pct = pcts[-1]
        message = (
            f"{p.scope} {p.window.period.value} budget at {pct}%: "
            f"${p.spent_usd} spent of ${p.limit_usd}" + (" (exhausted)" if p.exhausted else "")
        )
        if len(pcts) > 1:
            message += f" (crossed {', '.join(f'{x}%' for x in pcts)} at once)"
        kind = "alert" if p.scope == "global" else "campaign_alert"
        with session_scope(self._factory) as session:
            for level in pcts:
                budget_db.add_event(
                    session,
                    win=p.window,
                    kind=kind,
                    level=level,
                    spent=p.spent_usd,
                    limit=p.limit_usd,
                    message=message,
                )
        log.warning("budget_alert", threshold_pct=pct, message=message, **p.to_json())
        if self._notify is not None and self.config.webhook:
            payload = {"event": "budget_alert", "threshold_pct": pct, "crossed_pct": pcts}
            self._notify(payload | p.to_json())

    def _level_changed(self, old: int, status: BudgetStatus) -> None:
        top = max((p for p in status.periods if p.scope == "global"), key=lambda p: p.pct)
        reason = (
            f"budget {top.window.period.value} at {top.to_json()['pct']}% "
            f"(${top.spent_usd} of ${top.limit_usd})"
        )
        with session_scope(self._factory) as session:
            for level in levels_between(old, status.throttle_level):
                budget_db.add_event(
                    session,
                    win=top.window,
                    kind="throttle",
                    level=level,
                    spent=top.spent_usd,
                    limit=top.limit_usd,
                    message=f"throttle level {level}: {reason}",
                )
        log.warning("budget_throttle", old_level=old, level=status.throttle_level, reason=reason)
        if self._on_level is not None:
            self._on_level(old, status.throttle_level, reason)

    # -- limits and reconciliation ------------------------------------------------------------

    def set_limits(self, limits: dict[str, Decimal], *, campaign_id: int | None = None) -> None:
        """Store new limits (``{"daily": ...}``) and apply them to every worker at once.

        A raised limit clears the period's exhaustion mark and the alerts it is now below.
        """
        scope = "global" if campaign_id is None else f"campaign:{campaign_id}"
        with session_scope(self._factory) as session:
            for period, value in limits.items():
                budget_db.save_limit(
                    session, period=Period(period).value, campaign_id=campaign_id, limit=value
                )
        self.store.set_limits({f"{scope}:{p}": to_micros(v) for p, v in limits.items()})
        self._limits = None
        for p in self.status(fresh=True).periods:
            if p.scope != scope or p.window.period.value not in limits:
                continue
            pct = usage_pct(to_micros(p.spent_usd), to_micros(p.limit_usd))
            stale = [f"alert:{t}" for t in self.config.alert_thresholds if pct < t]
            self.store.unmark(p.key, *stale, *(["exhausted"] if pct < 1 else []))
        self.check()

    def reconcile(self) -> None:
        """Rebuild every current period in Redis from the ledger and the stored limits."""
        with session_scope(self._factory) as session:
            stored = budget_db.load_limits(session)
        limits = {f"global:{p}": to_micros(v) for p, v in self.config.limits.items()}
        for (camp, period), value in stored.items():
            scope = "global" if camp is None else f"campaign:{camp}"
            limits[f"{scope}:{period}"] = to_micros(value)
        self.store.set_limits(limits)
        for field in limits:
            scope, period = field.rsplit(":", 1)
            self._repair(scope, window(Period(period), self._clock(), self.config.timezone))
        self._cached = None
        self._limits = None

    def _repair(self, scope: str, win: Window) -> None:
        key = self.store.period_key(scope, win.period.value, win.label)
        camp = None if scope == "global" else int(scope.split(":")[1])
        ttl = int((win.end - win.start).total_seconds()) + 40 * 86400
        for _ in range(_REPAIR_TRIES):
            seq = self.store.state(key).seq
            open_ids = self.store.open_ids()
            with session_scope(self._factory) as session:
                # Ids first: every row they find is also in the sum read after them.
                ledgered = budget_db.recorded_request_ids(session, open_ids)
                spent = budget_db.ledger_spent(session, win, campaign=camp)
            # Fails when a call settled between our read of seq and the write: read again.
            if self.store.repair(
                key,
                to_micros(spent),
                expected_seq=seq,
                now=int(time.time()),
                stale_s=self.config.stale_reservation_s,
                ttl_s=ttl,
                ledgered=ledgered,
            ):
                return
        log.warning("budget_reconcile_contended", key=key)
