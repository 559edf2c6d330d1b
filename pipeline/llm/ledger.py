"""Ledger SQL (``llm_calls``): writing call rows, the journal lookup, and a stage's pending rows.

A stage's successful calls need not each commit their own transaction: their answers are already
journaled in Redis (``journal.py``) before anything else can fail, so their ledger rows can wait
for the stage's own finishing transaction (:class:`StageLedger`). Their budget reservations are
settled only after that commit, so the ledger stays ahead of Redis and reconciliation stays
safe. If the stage fails before it finishes, the reservations are released and the retried task
writes each row from its journal entry (same request id, so once). Failed and invalid attempts
are written at once, as before (an invalid answer is billed; its text is not journaled).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import CallStatus
from db.models import LLMCall
from pipeline.budget.models import Reservation

if TYPE_CHECKING:
    from pipeline.deps import BudgetView

log = structlog.get_logger(__name__)


def add_call(session: Session, row: LLMCall) -> None:
    """One ledger row, in the caller's transaction."""
    session.add(row)


def journaled_answer(session: Session, journal_key: str) -> LLMCall | None:
    """The first successful call recorded under ``journal_key`` (a replay), if any."""
    return session.scalars(
        select(LLMCall)
        .where(LLMCall.journal_key == journal_key, LLMCall.status == CallStatus.OK)
        .order_by(LLMCall.id)
        .limit(1)
    ).first()


def request_recorded(session: Session, request_id: str) -> bool:
    """Whether a row with this request id (a journal entry's) is already in the ledger."""
    found = session.scalar(select(LLMCall.id).where(LLMCall.request_id == request_id))
    return found is not None


@dataclass(eq=False)
class StageLedger:
    """Successful calls of one stage execution whose rows commit with the stage's result."""

    rows: list[LLMCall] = field(default_factory=list)
    held: list[tuple[Reservation, Decimal]] = field(default_factory=list)
    later: list[Callable[[Any], None]] = field(default_factory=list)
    """Redis writes (response-cache puts) sent with the settles, in the same round trip."""
    spent: Decimal = Decimal(0)
    """Everything this execution's calls cost so far (written or pending): the lead's spend cap
    adds it to what the ledger held at the claim."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def defer(self, row: LLMCall, reservation: Reservation | None, cost: Decimal) -> None:
        """Keep a successful call's row (and its reservation) for the finishing transaction."""
        with self._lock:
            self.rows.append(row)
            if reservation is not None:
                self.held.append((reservation, cost))
            self.spent += cost

    def count(self, cost: Decimal) -> None:
        """A call whose row was written at once still counts toward the lead's spend."""
        with self._lock:
            self.spent += cost

    def write(self, session: Session) -> None:
        """Add the pending rows to the finishing transaction (flushed with it)."""
        session.add_all(self.rows)

    def after_commit(self, write: Callable[[Any], None]) -> None:
        """Queue a Redis write (given a pipeline) for the settles' round trip."""
        with self._lock:
            self.later.append(write)

    def settle(self, budget: BudgetView | None) -> None:
        """After the finishing commit: settle every held reservation at its real cost, and send
        the queued writes, in one round trip."""
        held, later = self.held, self.later
        self.held, self.rows, self.later = [], [], []
        if budget is None or not (held or later):
            return

        def also(pipe: Any) -> None:
            for write in later:
                write(pipe)

        budget.settle_many(held, also)

    def abandon(self, budget: BudgetView | None) -> None:
        """The stage did not finish: give the reservations back (rows come from the journal)."""
        held, self.held, self.rows, self.later = self.held, [], [], []
        for reservation, _cost in held:
            try:
                if budget is not None:
                    budget.release(reservation)
            except Exception as exc:  # Redis is away too: the reconciler drops it later
                log.warning("reservation_release_failed", error=type(exc).__name__)
