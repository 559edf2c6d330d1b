"""``leadpipe report``, ``export`` and ``review``: reading results out of the database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from workers.context import NoData


review = typer.Typer(help="The human-review queue of held emails.", no_args_is_help=True)
# Wide enough for model names when the report goes to a file or a pipe.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _no_data(exc: NoData) -> typer.Exit:
    Console(stderr=True).print(str(exc), markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(exc.code)


def _reader() -> sessionmaker[Session]:
    """The read-only session factory, or exit with NoData's message (no migration, no file)."""
    from workers.context import NoData, read_session_factory

    try:
        return read_session_factory()
    except NoData as exc:
        raise _no_data(exc) from None


def report_document(campaign: str | None, html: Path | None = None) -> dict[str, Any]:
    """Build the report for ``campaign`` (all when None); write the HTML page to ``html``.

    Raises:
        LookupError: no such campaign, or no leadpipe tables yet (a read-only command does not
            run migrations: it must not change a database it was only asked to read).
    """
    from pipeline.llm.routing import load_routing_table
    from pipeline.reporting.html import write_html_report
    from pipeline.reporting.report import build_report
    from pipeline.settings import get_settings
    from workers.context import read_session_factory

    settings = get_settings()
    table = load_routing_table(settings.routing_table)
    catalog = table.catalog
    with read_session_factory()() as session:
        if html is not None:
            limit = settings.budget.daily_usd
            write_html_report(
                session, html, catalog=catalog, campaign=campaign, daily_limit_usd=limit
            )
        return build_report(session, catalog=catalog, campaign=campaign, is_cheap=table.is_cheap)


def outcome_line(doc: dict[str, Any]) -> str:
    """``approved 3 · held 1 · parked 0 · failed 5 · in progress 0`` (report and status)."""
    return (
        f"approved {doc['approved']} · held for review {doc['held']} · parked {doc['parked']} · "
        f"failed {doc['failed']} · in progress {doc['in_progress']}"
    )


def print_reasons(reasons: list[dict[str, Any]], console: Console) -> None:
    """The top reasons leads were failed, parked or held, most frequent first."""
    if reasons:
        console.print("top reasons:")
    for r in reasons:
        console.print(
            f"  {r['count']:>4} {r['outcome']:<7} {r['reason']}", markup=False, highlight=False
        )


def savings_line(doc: dict[str, Any]) -> str:
    """Savings only next to the emails they paid for; with none approved, say so first."""
    if not doc["approved"]:
        return (
            f"no email approved yet: ${doc['cost_usd']} spent on {doc['leads']} lead(s); "
            f"savings against the baseline do not apply (tokens priced at {doc['savings_pct']} % "
            "below it)"
        )
    return (
        f"${doc['cost_usd']} for {doc['approved']} approved email(s), "
        f"${doc['cost_per_approved_email_usd']} per approved email; savings {doc['savings_pct']} % "
        f"against the baseline (all {doc['baseline_model']}) ${doc['baseline_cost_usd']}"
    )


def print_report(doc: dict[str, Any], console: Console = out) -> None:
    """Render the report: outcomes first, then spend next to them, then the tables."""
    if doc["simulated"]:
        console.print(
            "[yellow]Calls were answered by the offline provider SIMULATOR: costs are "
            "what those calls would cost at catalogue prices.[/yellow]"
        )
    console.print(f"leads {doc['leads']}: {outcome_line(doc)}", markup=False, highlight=False)
    console.print(savings_line(doc), markup=False, highlight=False)
    print_reasons(doc["top_failure_reasons"], console)
    console.print(
        f"LLM calls {doc['llm_calls']} ({doc['failed_llm_calls']} failed)  cost per lead "
        f"${doc['cost_per_lead_usd']}  avg quality {doc['avg_quality']}  calls on cheap models "
        f"{doc['cheap_call_share']:.0%}"
    )
    print_paths(doc.get("batch_vs_sync") or [], console)
    for title, key in (("Cost by stage", "by_stage"), ("Cost by model", "by_model")):
        table = Table(title=title)
        for col in ("", "calls", "failed", "tokens in", "tokens out", "cost $", "baseline $"):
            table.add_column(col, justify="left" if not col else "right")
        for name, e in sorted(doc[key].items()):
            table.add_row(
                name,
                str(e["calls"]),
                str(e["failed_calls"]),
                str(e["prompt_tokens"]),
                str(e["completion_tokens"]),
                e["cost_usd"],
                e["baseline_cost_usd"],
            )
        console.print(table)


def print_paths(rows: list[dict[str, Any]], console: Console = out) -> None:
    """Per campaign: calls on the batch and sync paths, the batch saving, the deadline.

    A campaign that sent nothing to a batch and has no deadline gets no line (it would only say
    "batch 0 calls, no deadline"); ``--json`` keeps every campaign's row.
    """
    for r in rows:
        b, s, d = r["batch"], r["sync"], r["deadline"]
        if not b["calls"] and r["send_by"] is None and not r["send_within_s"]:
            continue
        held = {True: "held", False: "MISSED", None: "no lead due"}[d["held"]]
        deadline = r["send_by"] or (
            f"{r['send_within_s']} s per batch" if r["send_within_s"] else "-"
        )
        console.print(
            f"{r['campaign']}: batch {b['calls']} call(s) ${b['cost_usd']} "
            f"(saved ${b['saved_usd']} vs ${b['sync_price_usd']} at sync prices), "
            f"sync {s['calls']} call(s) ${s['cost_usd']}; deadline {deadline}: {held} "
            f"({d['on_time']} on time, {d['late']} late, {d['open_past_deadline']} open past it)",
            markup=False,
            highlight=False,
        )


def report(
    campaign: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML page")] = None,
) -> None:
    """Calls, cost per stage and model, savings against the all-premium baseline."""
    from workers.context import NoData

    try:
        doc = report_document(campaign, html)
    except NoData as exc:
        raise _no_data(exc) from None
    except LookupError as exc:
        Console(stderr=True).print(f"error: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print_report(doc)


def export(
    campaign: Annotated[str, typer.Option()],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    out_file: Annotated[Path | None, typer.Option("--out")] = None,
) -> None:
    """The approved emails of a campaign, ready for a sending tool."""
    from pipeline.campaigns.exports import export_campaign

    if fmt not in ("csv", "jsonl"):
        raise typer.BadParameter("--format must be csv or jsonl")
    with _reader()() as session:
        result = export_campaign(session, campaign=campaign, fmt=fmt)
    err = Console(stderr=True)
    if out_file is None:
        sys.stdout.write(result.text)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(result.text, encoding="utf-8")
        err.print(f"wrote {result.count} approved email(s) to {out_file}", markup=False)
    if result.duplicates:
        err.print(
            f"suppressed {len(result.duplicates)} repeat(s) of a recipient already in this "
            f"campaign: {', '.join(sorted(set(result.duplicates)))}",
            markup=False,
        )
    if result.undeliverable:
        err.print(
            f"left out {len(result.undeliverable)} approved email(s) with no deliverable "
            f"address (lead ids {', '.join(map(str, result.undeliverable))})",
            markup=False,
        )


@review.command("list")
def review_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Emails waiting for a human decision."""
    from pipeline.campaigns.exports import review_items

    with _reader()() as session:
        items = review_items(session)
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    for item in items:
        out.print(
            f"#{item['id']} lead {item['lead_id']} {item['company']}: {item['reason']}",
            markup=False,
        )


@review.command("show")
def review_show(item_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One held email in full: recipient, subject, body, judge scores and feedback."""
    from pipeline.campaigns.exports import review_items

    with _reader()() as session:
        items = [i for i in review_items(session, status=None) if i["id"] == item_id]
    if not items:
        raise typer.BadParameter(f"no review item {item_id}")
    if as_json:
        sys.stdout.write(json.dumps(items[0], indent=2) + "\n")
        return
    print_review_item(items[0])


def print_review_item(item: dict[str, Any], console: Console = out) -> None:
    """A held email as an operator reads it (every lead field printed as plain text)."""
    from pipeline.campaigns.exports import JUDGE_METRICS

    name = f"{item['recipient_name']} " if item["recipient_name"] else ""
    lines = [
        f"review #{item['id']} ({item['status']}), lead {item['lead_id']}, {item['company']}",
        f"To:      {name}<{item['recipient'] or 'no email address'}>",
        f"Subject: {item['subject']}",
        "",
        item["body"].rstrip(),
        "",
        f"Held because: {item['reason']}",
        "Judge: "
        + ", ".join(f"{k} {_score(item['scores'].get(k))}" for k in (*JUDGE_METRICS, "overall"))
        + (f" (gate {item['gate']})" if item["gate"] is not None else ""),
        f"Feedback: {item['feedback'] or '(none)'}",
        f"Model: {item['model']}",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _score(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _decide(item_id: int, *, approve: bool, by: str) -> None:
    from pipeline.campaigns.exports import review_decide
    from workers.context import session_factory

    verb = "approved" if approve else "rejected"
    try:
        with session_factory(migrate=True)() as session, session.begin():
            changed = review_decide(session, item_id, approve=approve, by=by)
    except LookupError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    out.print(f"{verb} #{item_id}" if changed else f"#{item_id} was already {verb}")


@review.command("approve")
def review_approve(item_id: int, by: Annotated[str, typer.Option()] = "ops") -> None:
    """Approve a held email (it is exported from then on); approving again is harmless."""
    _decide(item_id, approve=True, by=by)


@review.command("reject")
def review_reject(item_id: int, by: Annotated[str, typer.Option()] = "ops") -> None:
    """Reject a held email (it is never exported); rejecting again is harmless."""
    _decide(item_id, approve=False, by=by)
