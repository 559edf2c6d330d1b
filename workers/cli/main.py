"""``leadpipe``: enqueue, validate, status and the sub-command groups (typer + rich)."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from workers.cli import budget as cli_budget
from workers.cli import campaigns as cli_campaigns
from workers.cli import doctor as cli_doctor
from workers.cli import flower as cli_flower
from workers.cli import ops as cli_ops
from workers.cli import outcomes as cli_outcomes
from workers.cli import report as cli_report
from workers.cli import retry as cli_retry
from workers.cli.report import outcome_line, print_reasons

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from pipeline.ingest.leads import LeadFileError, LeadRecord, LeadStream
    from pipeline.settings import Settings


app = typer.Typer(
    help="leadpipe: leads in, judged outreach emails out, inside a budget.",
    no_args_is_help=True,
    add_completion=False,
)
for _command in (
    cli_report.report,
    cli_report.export,
    cli_ops.worker,
    cli_ops.simulator,
    cli_ops.demo,
    cli_ops.sweep,
    cli_ops.batch_poll,
    cli_flower.flower,
    cli_campaigns.beat,
    cli_retry.retry,
    cli_doctor.doctor,
):
    app.command()(_command)
app.add_typer(cli_report.review, name="review")
app.add_typer(cli_ops.db, name="db")
app.add_typer(cli_outcomes.outcomes, name="outcomes")
app.add_typer(cli_campaigns.campaigns, name="campaigns")
app.add_typer(cli_budget.budget, name="budget")
app.add_typer(cli_budget.queues, name="queues")
err = Console(stderr=True)


class StrategyChoice(StrEnum):
    """``pipeline.llm.routing.Strategy``'s values, for ``--strategy`` without importing routing
    (and its price catalogue) on every command; tests/unit/test_cli_imports.py keeps them equal."""

    COST = "cost"
    LATENCY = "latency"
    QUALITY = "quality"
    BALANCED = "balanced"


out = Console(soft_wrap=True)
_debug = {"on": False}


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"leadpipe {version('leadpipe')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print and exit"),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks of service errors")
    ] = False,
) -> None:
    """leadpipe: leads in, judged outreach emails out, inside a budget."""
    del show_version  # acted on eagerly by its callback
    _debug["on"] = debug


def _file_error_exit(exc: LeadFileError | OSError, path: Path) -> typer.Exit:
    """Print a whole-file problem (one line) and return the exit to raise (code 2)."""
    from pipeline.ingest.leads import LeadFileError

    text = str(exc) if isinstance(exc, LeadFileError) else f"{path}: {exc.strerror}"
    err.print(f"error: {text}", markup=False, highlight=False)
    return typer.Exit(2)


def _open_or_exit(path: Path) -> LeadStream:
    from pipeline.ingest.leads import LeadFileError, open_lead_file

    try:
        return open_lead_file(path)
    except (LeadFileError, OSError) as exc:
        raise _file_error_exit(exc, path) from None


def _first_or_exit(leads: Iterator[LeadRecord], path: Path) -> LeadRecord | None:
    """The first good lead (None: none at all); a problem with the whole file exits with 2."""
    from pipeline.ingest.leads import LeadFileError

    try:
        return next(leads, None)
    except (LeadFileError, OSError) as exc:
        raise _file_error_exit(exc, path) from None


def _drain_or_exit(leads: Iterator[LeadRecord], path: Path) -> None:
    """Read the rest of a stream for its counts, rejects and warnings (leads are dropped)."""
    from pipeline.ingest.leads import LeadFileError

    try:
        for _ in leads:
            pass
    except (LeadFileError, OSError) as exc:
        raise _file_error_exit(exc, path) from None


def _document(stream: LeadStream, batch_id: str | None) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "accepted": stream.accepted,
        "rejected": len(stream.rejects),
        "rejects": [{"row": r.row, "reason": r.reason} for r in stream.rejects],
        "warnings": [{"row": w.row, "reason": w.reason} for w in stream.warnings],
    }


def _print_summary(doc: dict[str, Any]) -> None:
    out.print(f"accepted {doc['accepted']} lead(s), rejected {doc['rejected']} row(s)")
    for reject in doc["rejects"]:
        out.print(f"  row {reject['row']}: {reject['reason']}", markup=False, highlight=False)
    for warning in doc["warnings"]:
        out.print(
            f"  row {warning['row']} (kept): {warning['reason']}", markup=False, highlight=False
        )


@app.command()
def validate(path: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check a CRM export (CSV or JSONL) without enqueueing anything or needing any service."""
    stream = _open_or_exit(path)
    _drain_or_exit(iter(stream), path)
    doc = _document(stream, None)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_summary(doc)
    raise typer.Exit(0 if stream.accepted else 1)


@app.command()
def enqueue(
    path: Path,
    campaign: Annotated[str, typer.Option(help="campaign name (created on first use)")],
    priority: Annotated[int, typer.Option(min=0, max=9, help="0 highest .. 9 lowest")] = 5,
    strategy: Annotated[
        StrategyChoice | None,
        typer.Option(help="routing strategy for the campaign (seed 002)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="show progress until the batch is done")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="with --wait: stop waiting after SECONDS (exit 3)"),
    ] = None,
    idle_warning: Annotated[
        float, typer.Option(min=0, help="with --wait: say why after SECONDS without progress")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    again: Annotated[
        bool, typer.Option(help="store a new batch even if this file is already in the campaign")
    ] = False,
) -> None:
    """Validate a lead file, store its good rows and start one chain per lead.

    The batch is committed first and marked dispatched once its chains reached the broker (an
    outbox): re-running the same file into the same campaign finishes that batch instead of
    storing a second one, and ``ops.dispatch_pending`` finishes it if nobody re-runs.

    With --wait the exit code says how the batch ended: 0 every lead finished and none failed
    (held or parked leads are listed), 1 at least one lead failed, 3 --timeout passed,
    130 Ctrl-C. After a timeout or Ctrl-C the batch goes on in the workers.
    """
    from pipeline.campaigns.batches import find_enqueued, hash_file, store_stream
    from pipeline.ingest.leads import LeadFileError
    from pipeline.settings import get_settings
    from workers.cli.embedded import ensure_embedded_redis
    from workers.cli.errors import require_url_shapes
    from workers.cli.progress import WaitExit, print_outcome, wait_for_batch
    from workers.context import session_factory

    require_url_shapes(get_settings())
    notice = ensure_embedded_redis(get_settings())
    if notice:
        err.print(notice, markup=False, highlight=False)
    cli_doctor.warn_if_not_ready([cli_doctor.provider_check(get_settings())])

    stream = _open_or_exit(path)
    leads = iter(stream)
    first = _first_or_exit(leads, path)
    if first is None:  # every row rejected: nothing to store, no database touched
        doc = _document(stream, None)
        sys.stdout.write(json.dumps(doc) + "\n") if as_json else _print_summary(doc)
        raise typer.Exit(1)
    factory = session_factory(migrate=True)
    source_hash = stream.sha256 or hash_file(path)
    _refuse_other_deployment(factory)
    try:
        with factory() as session, session.begin():
            earlier = (
                None
                if again
                else find_enqueued(session, campaign=campaign, source_hash=source_hash)
            )
            if earlier is None:
                batch_id = store_stream(
                    session,
                    stream,
                    itertools.chain([first], leads),
                    campaign=campaign,
                    priority=priority,
                    source=str(path),
                    source_hash=source_hash,
                    strategy=strategy.value if strategy else None,
                ).batch_id
            else:
                batch_id = earlier.id
    except (LeadFileError, OSError) as exc:  # seen half-way: the transaction stored nothing
        raise _file_error_exit(exc, path) from None
    if earlier is not None:
        _drain_or_exit(leads, path)  # the same counts and rejects as the first run printed
    sent = _dispatch_or_exit(factory, batch_id)
    doc = _document(stream, batch_id) | {"already_enqueued": earlier is not None}
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_summary(doc)
        out.print(_enqueued_line(batch_id, campaign, earlier is not None, sent), markup=False)
    if wait:
        code, progress = wait_for_batch(
            batch_id, quiet=as_json, timeout_s=timeout, idle_warning_s=idle_warning
        )
        print_outcome(code, batch_id, progress)
        if code is not WaitExit.OK:
            raise typer.Exit(int(code))


def _dispatch_or_exit(factory: sessionmaker[Session], batch_id: str) -> bool:
    """Send the stored batch (outbox); a broker outage leaves it pending and says how it ends."""
    from workers.canvas import dispatch_batch
    from workers.cli.errors import EXIT_SERVICE, explain, print_error

    try:
        return dispatch_batch(factory, batch_id) is not None
    except Exception as exc:
        line = None if _debug["on"] else explain(exc)
        if line is None:
            raise
        print_error(
            f"{line.rstrip('.')}; batch {batch_id} is stored but not dispatched: run the same "
            "command again, or the ops sweep sends it within minutes"
        )
        raise typer.Exit(EXIT_SERVICE) from None


def _enqueued_line(batch_id: str, campaign: str, earlier: bool, sent: bool) -> str:
    if not earlier:
        return f"batch {batch_id} enqueued"
    if sent:
        return f"this file was stored as batch {batch_id} in {campaign}; its dispatch is now done"
    return (
        f"this file is already enqueued as batch {batch_id} in {campaign}; nothing new was "
        "enqueued (--again stores a second batch)"
    )


def _refuse_other_deployment(factory: sessionmaker[Session]) -> None:
    """Exit 2 when the running workers use another database than the one this command opened."""
    import redis

    from db.identity import ensure_deployment_id
    from pipeline.settings import get_settings
    from workers.identity import workers_deployment_id

    settings = get_settings()
    with factory() as session, session.begin():
        ours = ensure_deployment_id(session)
    client = redis.Redis.from_url(settings.resolved_redis_url(), socket_timeout=5)
    try:
        theirs = workers_deployment_id(client)
    except redis.exceptions.RedisError:
        # No broker to ask: the batch is stored undispatched (outbox) and the workers still
        # refuse a foreign deployment's messages when they arrive.
        theirs = None
    finally:
        client.close()
    if theirs is not None and theirs != ours:
        err.print(
            f"error: the workers on this Redis use another database (deployment {theirs}); "
            f"this command opened {_where(settings)} (deployment {ours}). Nothing was enqueued: "
            "run it with the workers' LEADPIPE_HOME or LEADPIPE_DATABASE_URL.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)


def _where(settings: Settings) -> str:
    url = settings.resolved_database_url()
    return url if url.startswith("sqlite") else url.split("@")[-1]


@app.command()
def status(batch_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Outcomes of one batch (approved, held, parked, failed, with the top reasons) and stages."""
    from pipeline.campaigns.batches import batch_progress
    from workers.cli.progress import paused_queues
    from workers.context import NoData, read_session_factory

    try:
        factory = read_session_factory()  # read-only: never migrates, never creates a file
    except NoData as exc:
        err.print(f"error: no batch {batch_id}: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    with factory() as session:
        progress = batch_progress(session, batch_id)
        paused = paused_queues(session)
    if progress["leads"] == 0:
        err.print(f"error: no batch {batch_id}")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps({**progress, "paused_queues": paused}) + "\n")
        return
    out.print(
        f"batch {batch_id}: {progress['done']}/{progress['leads']} leads finished: "
        + outcome_line(progress),
        markup=False,
        highlight=False,
    )
    for queue, reason in sorted(paused.items()):
        out.print(
            f"  queue {queue} is PAUSED ({reason}): its leads wait until "
            f"`leadpipe queues resume {queue}`",
            markup=False,
            highlight=False,
        )
    print_reasons(progress["top_failure_reasons"], out)
    out.print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(progress["by_status"].items())))
    for stage, counts in progress["by_stage"].items():
        out.print(f"  {stage:<12} " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def main() -> None:
    """Run the CLI; an unreachable or misconfigured service is one line and exit code 2."""
    try:
        app()
    except Exception as exc:
        from workers.cli.errors import EXIT_SERVICE, explain, print_error

        line = None if _debug["on"] else explain(exc)
        if line is None:
            raise
        print_error(line)
        sys.exit(EXIT_SERVICE)
