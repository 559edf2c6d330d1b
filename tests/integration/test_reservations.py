"""Budget reservations against a real Redis and PostgreSQL, including 32 racing processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import multiprocessing as mp
import random
import time
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from db.enums import Stage
from db.models import BudgetEvent, LLMCall
from db.session import make_engine, make_session_factory
from pipeline.budget.guard import BudgetConfig, BudgetGuard, BudgetRefused
from pipeline.budget.reservations import ReservationStore
from pipeline.deps import Deps
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render

pytestmark = pytest.mark.integration
BIG = Decimal(1000)
CONFIG = BudgetConfig(
    limits={"daily": Decimal("0.05"), "weekly": BIG, "monthly": BIG},
    emergency_reserve=Decimal(0),
)
PROCESSES = 32
RUNS = 20


def _guard(
    client: redis.Redis, factory: sessionmaker[Session], config: BudgetConfig = CONFIG, **kw: Any
) -> BudgetGuard:
    return BudgetGuard(ReservationStore(client), factory, config, **kw)


def _race_worker(redis_url: str, db_url: str, seed: int, go: Any, results: Any) -> None:
    client = redis.Redis.from_url(redis_url)
    factory = make_session_factory(make_engine(db_url, poolclass=NullPool))
    guard = _guard(client, factory)
    rng = random.Random(seed)
    settled = largest = granted = refused = 0
    go.wait()
    while refused < 4:
        amount = Decimal(rng.randint(100, 3000)) / 1_000_000
        try:
            res = guard.reserve(amount, tier="smb")
        except BudgetRefused:
            refused += 1
            continue
        granted += 1
        largest = max(largest, res.micros)
        time.sleep(rng.random() / 500)  # the "model call": reservations overlap
        if rng.random() < 0.1:
            guard.release(res)
            continue
        actual = (amount * Decimal(rng.uniform(0.3, 1.0))).quantize(Decimal("0.000001"))
        guard.settle(res, actual)
        settled += int(actual * 1_000_000)
    results.put((settled, largest, granted, refused))


def _events(factory: sessionmaker[Session], kind: str) -> list[BudgetEvent]:
    with factory() as session:
        rows = session.scalars(
            select(BudgetEvent).where(BudgetEvent.kind == kind).order_by(BudgetEvent.id)
        )
        return list(rows)


def test_32_processes_never_overspend(
    redis_client: redis.Redis,
    redis_url: str,
    db_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    ctx = mp.get_context("fork")
    overshoots: list[tuple[int, int]] = []
    for run in range(RUNS):
        redis_client.flushdb()
        guard = _guard(redis_client, session_factory)
        guard.reconcile()
        go, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_race_worker, args=(redis_url, db_url, run * 100 + i, go, results))
            for i in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        go.set()
        outs = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        settled = sum(o[0] for o in outs)
        largest = max(o[1] for o in outs)
        overshoots.append((settled - 50_000, largest))
        assert settled <= 50_000 + largest, (run, settled, largest)
        daily = guard.status(fresh=True).periods[0]
        assert daily.window.period.value == "daily"
        assert (daily.spent_usd, daily.reserved_usd) == (Decimal(settled) / 1_000_000, 0)
        assert daily.exhausted and sum(o[3] for o in outs) == 4 * PROCESSES
        assert sum(o[2] for o in outs) > 15  # the budget really was shared out
        # 70, 90 and 100 % each crossed exactly once, whichever process got there first.
        levels = [e.level for e in _events(session_factory, "alert")][3 * run :]
        assert sorted(levels) == [70, 90, 100]
    logging.getLogger(__name__).warning(
        "max overshoot %s µ$ vs largest reservation %s µ$ over %s runs",
        max(o for o, _ in overshoots),
        max(r for _, r in overshoots),
        RUNS,
    )


def _ledger(factory: sessionmaker[Session], cost: str, at: dt.datetime) -> None:
    with factory.begin() as session:
        session.add(
            LLMCall(
                request_id=f"r{at.timestamp()}{cost}",
                journal_key="k",
                stage="classify",
                provider="p",
                model="m",
                cost_usd=Decimal(cost),
                created_at=at,
            )
        )


def test_reconcile_after_flushdb_restores_spent_from_ledger(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    now = dt.datetime.now(dt.UTC)
    _ledger(session_factory, "0.012345678901", now)
    _ledger(session_factory, "0.020000000000", now)
    _ledger(session_factory, "9.0", now - dt.timedelta(days=40))  # an earlier month
    guard = _guard(redis_client, session_factory)
    guard.reconcile()
    held = guard.reserve(Decimal("0.01"))
    redis_client.flushdb()  # Redis restarted empty: no spend, no limits, no reservations

    status = guard.status(fresh=True)  # repairs itself from the ledger
    daily = {p.window.period.value: p for p in status.periods}["daily"]
    assert daily.spent_usd == Decimal("0.032346")  # micro-dollars, rounded up
    assert daily.reserved_usd == 0 and daily.limit_usd == Decimal("0.05")
    with pytest.raises(BudgetRefused):
        guard.reserve(Decimal("0.02"))  # 0.032346 + 0.02 > 0.05: the ledger spend counts
    guard.settle(held, Decimal("0.001"))  # a call granted before the restart still settles
    assert guard.status(fresh=True).periods[0].spent_usd == Decimal("0.033346")


def test_leaked_reservation_is_dropped_by_reconcile(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    config = dataclasses.replace(CONFIG, stale_reservation_s=-1)
    guard = _guard(redis_client, session_factory, config)
    guard.reconcile()
    guard.reserve(Decimal("0.04"))  # its worker was killed: never settled
    with pytest.raises(BudgetRefused):
        guard.reserve(Decimal("0.02"))
    guard.reconcile()
    assert guard.status(fresh=True).periods[0].reserved_usd == 0
    guard.reserve(Decimal("0.02"))


def test_emergency_reserve_is_for_enterprise_leads(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    limits = {"daily": Decimal(15), "weekly": BIG, "monthly": BIG}
    guard = _guard(redis_client, session_factory, BudgetConfig(limits=limits))
    guard.reconcile()
    guard.settle(guard.reserve(Decimal(9), tier="smb"), Decimal(9))
    with pytest.raises(BudgetRefused, match="emergency reserve"):
        guard.reserve(Decimal(2), tier="smb")  # 9 + 2 > 15 - 5
    assert not guard.status(fresh=True).exhausted  # the reserve is not an exhausted budget
    guard.settle(guard.reserve(Decimal(5), tier="enterprise"), Decimal(5))
    assert guard.status(fresh=True).periods[0].spent_usd == 14


def test_alerts_once_levels_in_order_pause_hook_and_raise(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    changes: list[tuple[int, int]] = []
    sent: list[dict[str, Any]] = []
    config = dataclasses.replace(
        CONFIG, limits={**CONFIG.limits, "daily": Decimal(1)}, webhook=True
    )
    guard = _guard(
        redis_client,
        session_factory,
        config,
        on_level=lambda old, new, _why: changes.append((old, new)),
        notify=sent.append,
    )
    guard.reconcile()
    for cost in ("0.55", "0.2", "0.2"):  # 55 %, 75 %, 95 %
        guard.settle(guard.reserve(Decimal("0.01")), Decimal(cost))
    guard.settle(guard.reserve(Decimal("0.01")), Decimal("0.001"))  # no new crossing
    with pytest.raises(BudgetRefused):
        guard.reserve(Decimal("0.1"))
    with pytest.raises(BudgetRefused):
        guard.reserve(Decimal("0.1"))  # refused again: no second alert
    assert [e.level for e in _events(session_factory, "alert")] == [70, 90, 100]
    assert [e.level for e in _events(session_factory, "throttle")] == [1, 2, 3, 4, 5]
    assert changes == [(0, 1), (1, 2), (2, 4), (4, 5)]
    assert [p["threshold_pct"] for p in sent] == [70, 90, 100]
    assert guard.status(fresh=True).throttle_level == 5

    guard.set_limits({"daily": Decimal(10)})
    status = guard.status(fresh=True)
    assert (status.throttle_level, status.exhausted) == (0, False)
    assert changes[-1] == (5, 0)
    guard.reserve(Decimal("0.1"))


def test_gateway_reserves_settles_and_refuses(
    deps: Deps, redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    deps.budget = guard = _guard(redis_client, session_factory)
    guard.reconcile()
    prompt = render("classify", lead={"company": "Acme Dental", "industry": "Healthcare"})
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    call_model(deps, CallContext(Stage.CLASSIFY, None, "run-1", None), prompt, chain)
    with session_factory() as session:
        [row] = session.scalars(select(LLMCall)).all()
    daily = guard.status(fresh=True).periods[0]
    assert daily.reserved_usd == 0
    assert daily.spent_usd - row.cost_usd < Decimal("0.000001") and daily.spent_usd > 0

    guard.set_limits({"daily": daily.spent_usd})  # nothing left
    with pytest.raises(BudgetRefused):
        call_model(deps, CallContext(Stage.CLASSIFY, None, "run-2", None), prompt, chain)
    with session_factory() as session:
        assert len(session.scalars(select(LLMCall)).all()) == 1  # refused before any call


def test_a_new_day_books_against_the_new_day(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    """The period keys a guard keeps between reservations hold only inside their windows."""
    now = [dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.UTC)]
    config = dataclasses.replace(CONFIG, timezone="UTC")
    guard = _guard(redis_client, session_factory, config, clock=lambda: now[0])
    guard.reconcile()
    first = guard.reserve(Decimal("0.01"))
    assert guard.reserve(Decimal("0.01")).keys == first.keys  # kept
    now[0] += dt.timedelta(minutes=2)  # a new day and a new month (same ISO week)
    second = guard.reserve(Decimal("0.01"))
    assert [k.rsplit(":", 2)[1:] for k in first.keys] == [
        ["daily", "2026-03-31"],
        ["weekly", "2026-03-30"],
        ["monthly", "2026-03-01"],
    ]
    assert [k.rsplit(":", 2)[1:] for k in second.keys] == [
        ["daily", "2026-04-01"],
        ["weekly", "2026-03-30"],
        ["monthly", "2026-04-01"],
    ]
    now[0] -= dt.timedelta(minutes=2)  # a clock set back gets the old day's keys again
    assert guard.reserve(Decimal("0.01")).keys == first.keys


def test_settle_many_is_one_script_with_the_queued_cache_writes(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    guard = _guard(redis_client, session_factory)
    guard.reconcile()
    a, b = guard.reserve(Decimal("0.01")), guard.reserve(Decimal("0.02"))
    redis_client.script_flush()  # Redis restarted with its data: the script is loaded again
    guard.settle_many(
        [(a, Decimal("0.001")), (b, Decimal("0.002"))],
        lambda writes: writes.set("cache:test", "answer", ex=60),
    )
    daily = guard.status(fresh=True).periods[0]
    assert (daily.spent_usd, daily.reserved_usd) == (Decimal("0.003"), 0)
    assert redis_client.get("cache:test") == b"answer"
    assert 0 < redis_client.ttl("cache:test") <= 60
    # A reservation that is gone (the reconciler dropped it): not found, its cost still counts.
    again = guard.store.settle_many([(a.rid, 1000, a.keys)])
    assert [o.found for o in again] == [False]
    assert guard.status(fresh=True).periods[0].spent_usd == Decimal("0.004")
