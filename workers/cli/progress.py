"""``enqueue --wait``: a rich progress bar fed by the database, and an honest ending.

Waiting must never be silent: when nothing moves for a while the bar says why (queues paused by
the budget or by hand, no worker answering a ping), a timeout ends the wait with a non-zero exit,
and Ctrl-C says the batch goes on without us. The exit code tells a script what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


err = Console(stderr=True, soft_wrap=True)  # reasons stay one line each, for people and grep
POLL_S = 0.5
IDLE_WARNING_S = 30.0


class WaitExit(IntEnum):
    """``enqueue --wait`` exit codes (documented in README "Using it")."""

    OK = 0  # every lead finished and none failed (some may be held or parked: see the summary)
    FAILED = 1  # every lead finished and at least one failed
    TIMED_OUT = 3  # --timeout passed with leads still queued or running; the batch goes on
    INTERRUPTED = 130  # Ctrl-C; the batch goes on


@dataclass(slots=True)
class _Watch:
    """What the waiting loop remembers between polls to notice a batch that stopped moving."""

    fingerprint: str = ""
    moved_at: float = field(default_factory=time.monotonic)
    warned: set[str] = field(default_factory=set)

    def observe(self, progress: dict[str, Any], now: float) -> float:
        """Record this poll; return how long nothing has changed."""
        mark = repr((progress["by_status"], sorted(progress["by_stage"].items())))
        if mark != self.fingerprint:
            self.fingerprint, self.moved_at = mark, now
            self.warned.clear()
        return now - self.moved_at


def paused_queues(session: Session) -> dict[str, str]:
    """Queue -> reason for every queue paused in ``queue_state`` (by the budget or by hand)."""
    from pipeline.budget import store as budget_db

    rows = budget_db.paused_queue_reasons(session).items()
    return {queue: reason or "no reason given" for queue, reason in rows}


def ping_workers(timeout_s: float = 1.0) -> int:
    """How many leadpipe workers answer a Celery ping (0 when none, or the broker is down)."""
    from workers.app import app

    try:
        return len(app.control.ping(timeout=timeout_s) or [])
    except Exception:  # a broker hiccup means "no answer", not a crashed wait
        return 0


def detail_text(progress: dict[str, Any], paused: dict[str, str]) -> str:
    """The bar's detail column: outcomes by name, and the paused queues if any."""
    parts = [
        f"approved={progress['approved']}",
        f"held={progress['held']}",
        f"parked={progress['parked']}",
        f"failed={progress['failed']}",
        f"waiting={progress['in_progress']}",
    ]
    if paused:
        parts.append(f"[yellow]paused: {', '.join(sorted(paused))}[/yellow]")
    return " ".join(parts)


def stall_messages(
    idle_s: float,
    paused: dict[str, str],
    workers: Callable[[], int],
) -> dict[str, str]:
    """Why a batch may not be moving, keyed so each message is printed once per stall."""
    messages = {}
    if paused:
        listed = "; ".join(f"{q} ({r})" for q, r in sorted(paused.items()))
        messages["paused"] = (
            f"no progress for {idle_s:.0f} s: queue(s) paused: {listed}. Leads wait in Redis "
            "until resumed: `leadpipe queues resume QUEUE` (see `leadpipe budget status`)."
        )
    answering = workers()
    if answering == 0:
        messages["no-worker"] = (
            f"no progress for {idle_s:.0f} s and no worker answered a ping: start one with "
            "`leadpipe worker` (it uses the same LEADPIPE_DATABASE_URL and LEADPIPE_REDIS_URL)."
        )
    elif not paused:
        messages["busy"] = (
            f"no progress for {idle_s:.0f} s although {answering} worker(s) answer: they may be "
            "busy with other batches, waiting on slow models, or not consuming these queues "
            "(`leadpipe queues status`)."
        )
    return messages


def wait_for_batch(
    batch_id: str,
    *,
    quiet: bool = False,
    timeout_s: float | None = None,
    idle_warning_s: float = IDLE_WARNING_S,
    factory: sessionmaker[Session] | None = None,
    workers: Callable[[], int] = ping_workers,
) -> tuple[WaitExit, dict[str, Any]]:
    """Poll the database until no lead of the batch is queued or running, or ``timeout_s``.

    Returns:
        The exit code for ``enqueue --wait`` and the last progress document. Ctrl-C is caught
        here: the batch goes on, and the caller is told how to keep watching it.
    """
    from pipeline.campaigns.batches import batch_progress
    from workers.context import session_factory

    factory = factory or session_factory()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    watch = _Watch()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    progress: dict[str, Any] = {}
    with Progress(*columns, console=err, disable=quiet, transient=False) as bar:
        task = bar.add_task("leads", total=None, detail="")
        try:
            while True:
                with factory() as session:
                    progress = batch_progress(session, batch_id)
                    paused = paused_queues(session)
                detail = detail_text(progress, paused)
                bar.update(task, total=progress["leads"], completed=progress["done"], detail=detail)
                if progress["in_progress"] == 0:
                    return _finished(progress), progress
                now = time.monotonic()
                idle = watch.observe(progress, now)
                if idle >= idle_warning_s:
                    for key, text in stall_messages(idle, paused, workers).items():
                        if key not in watch.warned:
                            watch.warned.add(key)
                            err.print(text, markup=False, highlight=False)
                if deadline is not None and now > deadline:
                    return WaitExit.TIMED_OUT, progress
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            return WaitExit.INTERRUPTED, progress


def _finished(progress: dict[str, Any]) -> WaitExit:
    return WaitExit.FAILED if progress["failed"] else WaitExit.OK


def print_outcome(code: WaitExit, batch_id: str, progress: dict[str, Any]) -> None:
    """The closing lines of ``enqueue --wait`` on stderr: what happened and what to do next."""
    if progress:
        err.print(
            f"batch {batch_id}: {progress['leads']} lead(s): approved {progress['approved']}, "
            f"held for review {progress['held']}, parked {progress['parked']}, failed "
            f"{progress['failed']}, still queued or running {progress['in_progress']}",
            markup=False,
            highlight=False,
        )
        for r in progress["top_failure_reasons"]:
            err.print(
                f"  {r['count']:>4} {r['outcome']:<7} {r['reason']}", markup=False, highlight=False
            )
    watch = f"watch it with `leadpipe status {batch_id}`"
    if code is WaitExit.INTERRUPTED:
        err.print(f"stopped waiting; the batch goes on in the workers: {watch}", markup=False)
    elif code is WaitExit.TIMED_OUT:
        err.print(f"timed out waiting; the batch goes on in the workers: {watch}", markup=False)
    elif progress.get("held"):
        err.print("held emails wait for a decision: `leadpipe review list`", markup=False)
