"""``leadpipe retry``: send failed and parked leads back from the stage that did not finish."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from db.enums import Stage


def retry(
    batch: Annotated[str | None, typer.Option("--batch", help="only this batch id")] = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="only this campaign")] = None,
    stage: Annotated[
        Stage | None, typer.Option("--stage", help="only leads whose unfinished stage is this")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-open failed and parked leads and resume each at its first unfinished stage.

    Answers already paid for in the same run are replayed from the journal, not paid again.
    """
    from pipeline.campaigns.retry import find_retryable, reopen
    from workers.canvas import lead_chain
    from workers.lifecycle import process_deps

    deps = process_deps()
    with deps.session_scope() as session:
        found = find_retryable(session, batch_id=batch, campaign=campaign, stage=stage)
        reopen(session, [item.lead_id for item in found])
    for item in found:
        lead_chain(item.lead_id, item.run_id, item.priority, item.resume_at).apply_async()
    if as_json:
        typer.echo(
            json.dumps([{"lead_id": s.lead_id, "resume_at": s.resume_at.value} for s in found])
        )
    else:
        typer.echo(f"sent {len(found)} lead(s) back", err=True)
