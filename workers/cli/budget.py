"""``leadpipe budget status|set`` and ``leadpipe queues status|pause|resume``."""

from __future__ import annotations

import getpass
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.budget import queries as budget_db
from pipeline.budget.guard import BudgetGuard
from pipeline.deps import Deps
from workers.control import pause, queue_states, resume
from workers.lifecycle import process_deps
from workers.queues import ALL_QUEUES

budget = typer.Typer(help="Spend limits, alerts and throttle level.", no_args_is_help=True)
queues = typer.Typer(help="Pause and resume stage queues (persisted).", no_args_is_help=True)
out = Console(soft_wrap=True)
JsonOpt = Annotated[bool, typer.Option("--json")]


def _guard(deps: Deps) -> BudgetGuard:
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
) -> None:
    """Change limits; every worker applies them at once (queues stay as they are)."""
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
    _guard(deps).set_limits(limits, campaign_id=camp_id)
    out.print("limits set: " + ", ".join(f"{k} ${v}" for k, v in limits.items()))


def _pending(deps: Deps, queue: str) -> int:
    if deps.redis is None:
        return 0
    # kombu's Redis priority queues: "name", then "name:1" .. "name:9".
    names = [queue, *(f"{queue}:{i}" for i in range(1, 10))]
    return sum(int(deps.redis.llen(n)) for n in names)


@queues.command("status")
def queues_status(as_json: JsonOpt = False) -> None:
    """Every queue: paused or not, why, by whom, since when, and messages waiting."""
    deps = process_deps()
    states = queue_states(deps)
    rows: list[dict[str, Any]] = []
    for name in ALL_QUEUES:
        row = states.get(name)
        rows.append(
            {
                "queue": name,
                "paused": bool(row and row.paused),
                "reason": row.reason if row else None,
                "changed_by": row.changed_by if row else None,
                "changed_at": row.changed_at.isoformat() if row else None,
                "pending": _pending(deps, name),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps({"queues": rows}) + "\n")
        return
    table = Table("queue", "state", "pending", "since", "by", "reason")
    for r in rows:
        state = "[red]paused[/red]" if r["paused"] else "running"
        since = (r["changed_at"] or "")[:19]
        table.add_row(
            r["queue"], state, str(r["pending"]), since, r["changed_by"] or "", r["reason"] or ""
        )
    out.print(table)


@queues.command("pause")
def queues_pause(
    queue: str, reason: Annotated[str, typer.Option(help="shown in queues status")] = "manual"
) -> None:
    """Stop all workers consuming QUEUE; messages wait in Redis; survives worker restarts."""
    if queue not in ALL_QUEUES:
        raise typer.BadParameter(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    pause(process_deps(), queue, reason=reason, by=getpass.getuser())
    out.print(f"{queue} paused")


@queues.command("resume")
def queues_resume(queue: str) -> None:
    """Let the workers started with QUEUE consume it again."""
    if queue not in ALL_QUEUES:
        raise typer.BadParameter(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    resume(process_deps(), queue, by=getpass.getuser())
    out.print(f"{queue} resumed")
