"""``leadpipe budget status|set`` and ``leadpipe queues status|pause|resume``."""

from __future__ import annotations

import getpass
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from workers.queues import ALL_QUEUES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from pipeline.budget.guard import BudgetGuard
    from pipeline.deps import Deps


budget = typer.Typer(help="Spend limits, alerts and throttle level.", no_args_is_help=True)
queues = typer.Typer(help="Pause and resume stage queues (persisted).", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
JsonOpt = Annotated[bool, typer.Option("--json")]


def _guard(deps: Deps) -> BudgetGuard:
    from pipeline.budget.guard import BudgetGuard

    if not isinstance(deps.budget, BudgetGuard):
        raise typer.BadParameter("no budget guard configured")
    return deps.budget


def _money(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{name}: not a number: {value!r}") from None
    if amount < 0:
        raise typer.BadParameter(f"{name}: must not be negative")
    return amount


@budget.command("status")
def budget_status(as_json: JsonOpt = False) -> None:
    """Limits, spend, reservations and the throttle level of every current period."""
    from workers.lifecycle import process_deps

    status = _guard(process_deps()).status(fresh=True)
    if as_json:
        sys.stdout.write(json.dumps(status.to_json()) + "\n")
        return
    table = Table("scope", "period", "start", "limit", "spent", "reserved", "used")
    for p in status.to_json()["periods"]:
        used = f"{p['pct']}%" + (" EXHAUSTED" if p["exhausted"] else "")
        table.add_row(
            p["scope"],
            p["period"],
            p["start"][:10],
            f"${p['limit_usd']}",
            f"${Decimal(p['spent_usd']):.4f}",
            f"${Decimal(p['reserved_usd']):.4f}",
            used,
        )
    out.print(table)
    out.print(f"throttle level {status.throttle_level} of 5")


@budget.command("set")
def budget_set(
    daily: Annotated[str | None, typer.Option(help="USD per day")] = None,
    weekly: Annotated[str | None, typer.Option(help="USD per ISO week")] = None,
    monthly: Annotated[str | None, typer.Option(help="USD per month")] = None,
    campaign: Annotated[str | None, typer.Option(help="limit one campaign only")] = None,
    resume_queues: Annotated[
        bool, typer.Option("--resume", help="also resume the queues the budget paused")
    ] = False,
) -> None:
    """Change limits; every worker applies them at once (queues stay as they are)."""
    from pipeline.budget import store as budget_db
    from workers.lifecycle import process_deps

    values = {"daily": daily, "weekly": weekly, "monthly": monthly}
    limits = {k: m for k, v in values.items() if (m := _money(v, k)) is not None}
    if not limits:
        raise typer.BadParameter("give at least one of --daily, --weekly, --monthly")
    deps = process_deps()
    camp_id = None
    if campaign is not None:
        with deps.session_scope() as session:
            camp_id = budget_db.campaign_id(session, campaign)
        if camp_id is None:
            raise typer.BadParameter(f"no campaign named {campaign!r}")
    guard = _guard(deps)
    guard.set_limits(limits, campaign_id=camp_id)
    out.print("limits set: " + ", ".join(f"{k} ${v}" for k, v in limits.items()))
    scope = "global" if camp_id is None else f"campaign:{camp_id}"
    status = guard.status(fresh=True)
    for p in status.periods:
        if p.scope == scope and p.window.period.value in limits and p.spent_usd >= p.limit_usd:
            err.print(
                f"warning: the new {p.window.period.value} limit ${p.limit_usd} is not above "
                f"this period's spend ${p.spent_usd}: no model call runs until it resets",
                markup=False,
                highlight=False,
            )
    _budget_paused_queues(deps, resume_them=resume_queues, exhausted=status.exhausted)


def _budget_paused_queues(deps: Deps, *, resume_them: bool, exhausted: bool) -> None:
    """Say which queues the budget left paused (a new limit does not resume them), or resume."""
    from workers.control import queue_states, resume

    paused = [
        n for n, row in queue_states(deps).items() if row.paused and row.changed_by == "budget"
    ]
    if not paused:
        return
    if resume_them:
        for name in paused:
            resume(deps, name, by=getpass.getuser())
        out.print(f"resumed {', '.join(paused)}")
        if exhausted:
            err.print("warning: the budget is still exhausted; they will pause again")
        return
    err.print(
        f"queues still paused by the budget: {', '.join(paused)}; resume them with "
        + " && ".join(f"leadpipe queues resume {n}" for n in paused)
        + " (or run budget set again with --resume)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _pending(deps: Deps, queue: str) -> int | None:
    import redis

    if deps.redis is None:
        return 0
    from workers.app import app

    # kombu's Redis priority queues: "name", then "name<sep>1" .. "name<sep>9".
    sep = app.conf.broker_transport_options.get("sep", "\x06\x16")
    names = [queue, *(f"{queue}{sep}{i}" for i in range(1, 10))]
    try:
        return sum(int(deps.redis.llen(n)) for n in names)
    except redis.RedisError:  # Redis down (or the embedded one not started): unknown
        return None


def _consumers() -> dict[str, int] | None:
    """Queue -> how many live workers consume it now (what Flower shows); None: no reply."""
    from workers.app import app

    try:
        replies = app.control.inspect(timeout=1.0).active_queues()
    except Exception:  # no broker: the stored state is all there is to show
        return None
    if replies is None:
        return None
    counts: dict[str, int] = {}
    for active in replies.values():
        for queue in active:
            counts[queue["name"]] = counts.get(queue["name"], 0) + 1
    return counts


def _state(paused: bool, consumers: int | None) -> str:
    """The stored pause reconciled with the workers' live consumers (Flower can resume)."""
    if consumers is None:
        return "paused" if paused else "running"
    if paused and consumers:
        return f"paused here, but {consumers} worker(s) consume it (resumed in Flower?)"
    if not paused and not consumers:
        return "running (no worker consumes it)"
    return "paused" if paused else "running"


@queues.command("status")
def queues_status(as_json: JsonOpt = False) -> None:
    """Every queue: paused or not (stored and as the workers consume it), why, and backlog."""
    from workers.context import NoData, read_session_factory
    from workers.control import queue_states
    from workers.lifecycle import process_deps

    try:
        factory = read_session_factory()  # a fresh home has no queue states: say so, no crash
    except NoData as exc:
        Console(stderr=True).print(str(exc), markup=False, highlight=False)
        raise typer.Exit(exc.code) from None
    deps = process_deps()
    if deps.redis is not None:  # unreachable: one line naming LEADPIPE_REDIS_URL, exit 2 (main)
        deps.redis.ping()
    states = queue_states(deps)
    live = _consumers()
    rows: list[dict[str, Any]] = []
    for name in ALL_QUEUES:
        row = states.get(name)
        consumers = None if live is None else live.get(name, 0)
        paused = bool(row and row.paused)
        rows.append(
            {
                "queue": name,
                "paused": paused,
                "reason": row.reason if row else None,
                "changed_by": row.changed_by if row else None,
                "changed_at": row.changed_at.isoformat() if row else None,
                "pending": _pending(deps, name),
                "consumers": consumers,
                "state": _state(paused, consumers),
            }
        )
    limits, cooling = _rate_limits(deps)
    waiting = _batch_waiting(factory)
    if as_json:
        doc = {
            "queues": rows,
            "batch_waiting": waiting,
            "rate_limits": limits,
            "rate_limit_cooldowns": cooling,
        }
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    table = Table("queue", "state", "consumers", "pending", "since", "by", "reason")
    for r in rows:
        state = f"[red]{r['state']}[/red]" if r["paused"] else r["state"]
        since = (r["changed_at"] or "")[:19]
        table.add_row(
            r["queue"],
            state,
            "?" if r["consumers"] is None else str(r["consumers"]),
            "?" if r["pending"] is None else str(r["pending"]),
            since,
            r["changed_by"] or "",
            r["reason"] or "",
        )
    out.print(table)
    if live is None:
        out.print("no worker answered: consumers unknown (is a worker running?)")
    _print_batch_waiting(waiting)
    _print_rate_limits(limits, cooling)


def _batch_waiting(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Requests parked on the batch path: their leads are in no queue until the answer comes."""
    from pipeline.batch.store import now, waiting

    with factory() as session:
        found = waiting(session)
    moment = now()
    return [
        {
            "stage": w.stage,
            "model": w.model_ref,
            "pending": w.pending,
            "grouped": w.grouped,
            "oldest": w.oldest.isoformat(),
            "waiting_s": round((moment - w.oldest).total_seconds(), 1),
        }
        for w in found
    ]


def _print_batch_waiting(waiting: list[dict[str, Any]]) -> None:
    if not waiting:
        return
    table = Table(
        "stage",
        "model",
        "waiting for a group",
        "in a group",
        "oldest waits",
        title="waiting on the batch path (their leads are in no queue meanwhile)",
    )
    for w in waiting:
        table.add_row(
            w["stage"], w["model"], str(w["pending"]), str(w["grouped"]), f"{w['waiting_s']:.0f} s"
        )
    out.print(table)


def _rate_limits(deps: Deps) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The routing table's shared rate limits with their state in Redis, and 429 cooldowns."""
    if deps.limiter is None:
        return [], {}
    return deps.limiter.state(), deps.limiter.cooldowns()


def _print_rate_limits(limits: list[dict[str, Any]], cooling: dict[str, float]) -> None:
    if not limits:
        out.print("rate limits: none configured ([rate_limits] in the routing table)")
    else:
        table = Table("rate limit", "limits", "next request in", "tokens free", "in flight")
        for r in limits:
            table.add_row(
                r["scope"],
                r["limits"],
                "" if r["next_free_s"] is None else f"{r['next_free_s']:.1f} s",
                "" if r["tokens_free"] is None else str(r["tokens_free"]),
                "" if r["in_flight"] is None else f"{r['in_flight']}/{r['max_concurrent']}",
            )
        out.print(table)
    for model, seconds in sorted(cooling.items()):
        out.print(f"{model}: held back {seconds:.1f} s more after a 429 (Retry-After)")


@queues.command("pause")
def queues_pause(
    queue: str, reason: Annotated[str, typer.Option(help="shown in queues status")] = "manual"
) -> None:
    """Stop all workers consuming QUEUE; messages wait in Redis; survives worker restarts."""
    from workers.control import pause
    from workers.lifecycle import process_deps

    if queue not in ALL_QUEUES:
        raise typer.BadParameter(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    pause(process_deps(), queue, reason=reason, by=getpass.getuser())
    out.print(f"{queue} paused")


@queues.command("resume")
def queues_resume(queue: str) -> None:
    """Let the workers started with QUEUE consume it again."""
    from workers.control import resume
    from workers.lifecycle import process_deps

    if queue not in ALL_QUEUES:
        raise typer.BadParameter(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    resume(process_deps(), queue, by=getpass.getuser())
    out.print(f"{queue} resumed")
