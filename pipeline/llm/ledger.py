"""Ledger SQL (``llm_calls``): writing call rows, the journal lookup, and a stage's pending rows.

A stage's successful calls need not each commit their own transaction: their answers are already
journaled in Redis (``journal.py``) before anything else can fail, so their ledger rows can wait
for the stage's own finishing transaction (:class:`StageLedger`). Their budget reservations are
settled only after that commit, so the ledger stays ahead of Redis and reconciliation stays
safe. If the stage fails before it finishes, the reservations are released and the retried task
writes each row from its journal entry (same request id, so once). Failed and invalid attempts
are written at once, as before (an invalid answer is billed; its text is not journaled). A cache
hit in a stage waits too: it costs $0 and reserves nothing, so a stage that never finishes loses
only that $0 row, and its retry records its own hit.

Rows are plain column dicts (:data:`CallRow`) written with one Core ``INSERT`` (an
``executemany`` for several): nothing reads them back as ORM objects, so the unit of work (object
state, flush ordering, identity map) would only add CPU to the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from db.enums import CallStatus
from db.models import LLMCall
from pipeline.budget.models import Reservation

if TYPE_CHECKING:
    from pipeline.deps import BudgetView

log = structlog.get_logger(__name__)
CallRow = Mapping[str, Any]
"""One ``llm_calls`` row as column values (``id`` and ``created_at`` are filled in on insert);
every row the gateway builds has the same keys, so several go in one ``executemany``."""
_INSERT = insert(cast(Table, LLMCall.__table__)).inline()
"""Built once (SQLAlchemy reuses its compiled form); ``inline``: no ``RETURNING id``, nothing
reads the new ids back."""


def add_call(session: Session, row: CallRow) -> None:
    """One ledger row, in the caller's transaction (executed now, not at the next flush)."""
    add_calls(session, [row])


def add_calls(session: Session, rows: Sequence[CallRow]) -> None:
    """Ledger rows in the caller's transaction: one INSERT, or one executemany for several.

    Executed on the session's connection, so later statements of the same transaction (the
    judge's quality scores, ``stages.store.set_call_qualities``) see them.
    """
    if rows:
        session.connection().execute(_INSERT, rows[0] if len(rows) == 1 else list(rows))


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

    rows: list[CallRow] = field(default_factory=list)
    held: list[tuple[Reservation, Decimal]] = field(default_factory=list)
    later: list[Callable[[Any], None]] = field(default_factory=list)
    """Redis writes (response-cache puts) sent with the settles, in the same command."""
    spent: Decimal = Decimal(0)
    """Everything this execution's calls cost so far (written or pending): the lead's spend cap
    adds it to what the ledger held at the claim."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def defer(self, row: CallRow, reservation: Reservation | None, cost: Decimal) -> None:
        """Keep a successful call's row (and its reservation, None for a cache hit) for the
        finishing transaction."""
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
        """Insert the pending rows in the finishing transaction (one statement; committed with
        it). Kept until :meth:`settle` or :meth:`abandon`."""
        with self._lock:
            rows = list(self.rows)
        add_calls(session, rows)

    def after_commit(self, write: Callable[[Any], None]) -> None:
        """Queue a Redis write for the settles' round trip: ``write`` is given a writer whose
        only command is ``set(name, value, ex=seconds)``
        (``budget.reservations.QueuedWrites``)."""
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
