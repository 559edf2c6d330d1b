"""``leadpipe campaigns add|list|remove|run-now`` and ``leadpipe beat``: scheduled campaigns."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pipeline.campaigns.schedules import CampaignRun, ScheduledCampaign


campaigns = typer.Typer(
    help="Scheduled (nightly) campaigns, run by `leadpipe beat`.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def _doc(c: ScheduledCampaign) -> dict[str, Any]:
    return {
        "name": c.name,
        "source": c.source,
        "cron": c.cron,
        "priority": c.priority,
        "enabled": c.enabled,
        "deadline": c.deadline.isoformat() if c.deadline else None,
        "last_run_at": c.last_run_at.isoformat() if c.last_run_at else None,
        "sources_processed": c.sources_processed,
    }


@campaigns.command("add")
def add(
    name: str,
    source: Annotated[Path, typer.Option(help="a lead file, or a directory of *.csv/*.jsonl")],
    cron: Annotated[str, typer.Option(help="five-field cron in UTC, e.g. '0 2 * * *'")],
    priority: Annotated[int, typer.Option(min=0, max=9, help="0 highest .. 9 lowest")] = 5,
    deadline: Annotated[
        str | None, typer.Option(help="stop after: ISO datetime, or a duration (P30D, 12h)")
    ] = None,
) -> None:
    """Schedule a campaign; a running `leadpipe beat` picks it up within seconds."""
    from db.base import utcnow
    from pipeline.campaigns.cron import CronError
    from pipeline.campaigns.schedules import CampaignError, add_campaign, parse_deadline
    from workers.context import session_factory

    try:
        until = parse_deadline(deadline, now=utcnow()) if deadline else None
        with session_factory(migrate=True)() as session, session.begin():
            view = add_campaign(
                session, name=name, source=source, cron=cron, priority=priority, deadline=until
            )
    except (CronError, CampaignError) as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"scheduled campaign {view.name}: '{view.cron}' (UTC) over {view.source}, "
        f"priority {view.priority}"
        + (f", until {view.deadline:%Y-%m-%d %H:%M %Z}" if until else ""),
        markup=False,
        highlight=False,
    )


@campaigns.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The scheduled campaigns, and every drop file that could not be used (with why)."""
    from pipeline.campaigns.schedules import list_campaigns, source_errors
    from workers.context import NoData, read_session_factory

    try:
        factory = read_session_factory()
    except NoData as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(exc.code) from None
    with factory() as session:
        errors = source_errors(session)
        rows = [_doc(c) | {"errors": errors.get(c.name, [])} for c in list_campaigns(session)]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("name", "cron (UTC)", "source", "prio", "deadline", "last run", "files")
    for r in rows:
        cells = [r[k] for k in ("name", "cron", "source", "priority", "deadline", "last_run_at")]
        table.add_row(
            *(str(c) if c is not None else "-" for c in cells), str(r["sources_processed"])
        )
    out.print(table)
    for r in rows:
        for bad in r["errors"]:
            out.print(
                f"{r['name']}: could not use {bad['path']}: {bad['error']}",
                markup=False,
                highlight=False,
            )


@campaigns.command("send-by")
def send_by(
    name: str,
    when: Annotated[
        str | None,
        typer.Argument(help="ISO datetime, or a duration from now (12h, PT6H); omit to clear"),
    ] = None,
    within: Annotated[
        str | None,
        typer.Option(help="each enqueued batch is due this long after it is enqueued (6h, PT2H)"),
    ] = None,
) -> None:
    """Set the campaign's send-by time: work that can wait goes to the cheaper provider batch
    path, work whose deadline is near (or whose batch is late) runs on the sync path in time."""
    from db.base import utcnow
    from pipeline.campaigns.schedules import CampaignError, parse_deadline
    from pipeline.campaigns.send_by import set_send_by
    from workers.context import session_factory

    now = utcnow()
    try:
        moment = parse_deadline(when, now=now) if when else None
        window = int((parse_deadline(within, now=now) - now).total_seconds()) if within else None
        with session_factory(migrate=True)() as session, session.begin():
            view = set_send_by(session, name, send_by=moment, send_within_s=window)
    except (CampaignError, ValueError) as exc:
        raise _fail(str(exc)) from None
    parts = []
    if view.send_by is not None:
        parts.append(f"send by {view.send_by:%Y-%m-%d %H:%M %Z}")
    if view.send_within_s is not None:
        parts.append(f"each batch within {view.send_within_s} s of its enqueue")
    text = ", ".join(parts) or "no deadline (work may always wait for a provider batch)"
    out.print(f"campaign {view.campaign}: {text}", markup=False, highlight=False)
    if view.created:
        err.print(
            f"note: there was no campaign {view.campaign!r} yet: it was created, and batches "
            "enqueued into it get this deadline (check the name if you meant an existing one)",
            markup=False,
            highlight=False,
        )


@campaigns.command("remove")
def remove(name: str) -> None:
    """Unschedule a campaign (its batches and results stay)."""
    from pipeline.campaigns.schedules import remove_campaign
    from workers.context import session_factory

    with session_factory(migrate=True)() as session, session.begin():
        removed = remove_campaign(session, name)
    if not removed:
        raise _fail(f"no scheduled campaign {name!r}", code=1)
    out.print(f"campaign {name} unscheduled", markup=False, highlight=False)


@campaigns.command("run-now")
def run_now(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Process the campaign's new source files now and enqueue their leads."""
    from pipeline.campaigns.schedules import CampaignError, run_campaign
    from workers.canvas import dispatch_batch
    from workers.context import session_factory

    factory = session_factory(migrate=True)
    try:
        run = run_campaign(factory, name=name, force=True)
    except CampaignError as exc:
        raise _fail(str(exc), code=1) from None
    for batch in run.batches:
        dispatch_batch(factory, batch.batch_id)
    _print_run(run, as_json=as_json)


def _print_run(run: CampaignRun, *, as_json: bool) -> None:
    sources = [
        {
            "path": o.path,
            "batch_id": o.batch.batch_id if o.batch else None,
            "accepted": o.accepted,
            "rejected": o.rejected,
            "error": o.error,
        }
        for o in run.outcomes
    ]
    if as_json:
        sys.stdout.write(json.dumps({"campaign": run.campaign, "sources": sources}) + "\n")
        return
    if not sources:
        out.print(f"campaign {run.campaign}: no new source files")
    for s in sources:
        what = f"batch {s['batch_id']}, {s['accepted']} lead(s)" if s["batch_id"] else s["error"]
        out.print(f"  {s['path']}: {what}", markup=False, highlight=False)


def beat(loglevel: Annotated[str, typer.Option("--loglevel")] = "INFO") -> None:
    """Run celery beat with the database scheduler (campaigns are read while it runs)."""
    from workers.app import app

    app.start(["beat", "-S", "workers.beat:DatabaseScheduler", "--loglevel", loglevel])
