"""``enqueue --wait``: a rich progress bar fed by the database."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.campaigns.batches import batch_progress
from workers.context import session_factory

err = Console(stderr=True)


def wait_for_batch(
    batch_id: str, *, quiet: bool = False, timeout_s: float = 3600
) -> dict[str, Any]:
    """Poll the database until every lead of the batch is done; a rich bar unless quiet."""
    factory = session_factory()
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=quiet, transient=False) as bar:
        task = bar.add_task("leads", total=None, detail="")
        while True:
            with factory() as session:
                progress = batch_progress(session, batch_id)
            counts = progress["by_status"]
            detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            bar.update(task, total=progress["leads"], completed=progress["done"], detail=detail)
            if progress["done"] >= progress["leads"] or time.monotonic() > deadline:
                return progress
            time.sleep(0.5)
