"""``leadpipe outcomes import FILE``: replies and meetings back from the sending tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

outcomes = typer.Typer(help="Outcomes from the sending tool (reply rates).", no_args_is_help=True)


@outcomes.command("import")
def import_file(path: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Import a CSV or JSONL of `email,replied[,meeting]` rows."""
    from pipeline.campaigns.outcomes import import_outcomes
    from workers.context import session_factory

    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        typer.echo(f"error: {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    with session_factory(migrate=True)() as session, session.begin():
        result = import_outcomes(session, text, fmt=fmt, source=str(path))
    doc = {"imported": result.imported, "rejected": len(result.rejects), "rejects": result.rejects}
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    typer.echo(f"imported {result.imported} outcome(s), rejected {len(result.rejects)}")
    for reject in result.rejects:
        typer.echo(f"  row {reject['row']}: {reject['reason']}")
