"""The database side of the provider-batch poll (:class:`pipeline.batch.provider.OpenBatches`).

Over the collector's tables: a submitted provider batch is a ``batch_groups`` row with status
``awaiting``; its requests are the group's ``batch_requests`` still ``grouped``.

- ``deliver`` writes each answer like the collector does (journal, ledger row under the
  request's journal key, ``batch`` routing reason, the batch price) and books its cost in the
  budget; a per-request error goes back to the sync path. A request that is no longer waiting
  (flipped, sent to sync by a re-run stage) or whose journal key already has a successful ledger
  row is skipped: a late answer is never recorded or settled twice.
- ``flip`` sends the group's waiting requests back to the sync path (the planner said the
  deadline is near or the batch is late).

Both collect the leads to resume in ``resumes`` (the beat task sends their chains again).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from pipeline.batch import store
from pipeline.batch.backend import BatchItemResult
from pipeline.batch.collector import Collected, _Answers, _apply, _Pending, _price, _to_sync
from pipeline.batch.deadlines import deadlines, earliest
from pipeline.batch.provider import AWAITING, FLIPPED, OpenBatch
from pipeline.budget.guard import BudgetRefused

if TYPE_CHECKING:
    from pipeline.deps import Deps

log = structlog.get_logger(__name__)
FLIP_PREFIX = "flipped to sync: "


class AwaitingGroups:
    """``OpenBatches`` over ``batch_groups`` / ``batch_requests``."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self.done = Collected()

    @property
    def resumes(self) -> list[store.Resume]:
        return self.done.resumes

    def open_batches(self) -> Sequence[OpenBatch]:
        """Every ``awaiting`` group, with the earliest deadline of its waiting leads."""
        found = []
        with self._deps.session_scope() as session:
            for group in store.groups_with_status(session, AWAITING):
                due = deadlines(session, store.grouped_lead_ids(session, group.id))
                found.append(
                    OpenBatch(
                        group_id=group.id,
                        backend=group.backend,
                        provider=group.model_ref.partition(":")[0],
                        handle=group.handle or "",
                        submitted_at=store.aware(group.submitted_at or group.created_at),
                        deadline=earliest(due.values()),
                    )
                )
        return found

    def deliver(self, batch: OpenBatch, results: Sequence[BatchItemResult]) -> tuple[int, int]:
        """Write the answers still wanted, send the errors to sync, finish the group."""
        deps = self._deps
        waiting = self._waiting(batch)
        by_id = dict(waiting)
        wanted = []
        for result in results:
            item = waiting.pop(result.request_id, None)
            if item is None:
                continue  # flipped or answered meanwhile
            if self._answered(item.request_id):
                self._finish([item], "answered on the sync path first")
                continue
            wanted.append(result)
        ref = self._ref(next(iter(by_id.values()))) if by_id else ""
        answers = _Answers(ref, deps.batch_apis.get(batch.provider), set(), 0)
        before = self.done.to_sync
        finished = _apply(deps, answers, by_id, wanted, {}, self.done)
        written = {item.request_id for item in finished}
        for result in wanted:
            if result.request_id in written:
                self._book(by_id[result.request_id], _price(deps, answers, result)[0])
        self._finish(finished, None, resume=True)
        if waiting:  # not in the results at all: the sync path answers them
            _to_sync(deps, list(waiting.values()), "missing from the batch results", self.done)
        with deps.session_scope() as session:
            store.finish_group(session, batch.group_id, store.FINISHED, backend=batch.backend)
        return len(finished), self.done.to_sync - before

    def flip(self, batch: OpenBatch, reason: str) -> int:
        """Every waiting request of the batch back to the sync path."""
        waiting = list(self._waiting(batch).values())
        if waiting:
            _to_sync(self._deps, waiting, FLIP_PREFIX + reason, self.done)
        with self._deps.session_scope() as session:
            store.finish_group(
                session, batch.group_id, FLIPPED, error=reason[:2000], backend=batch.backend
            )
        return len(waiting)

    def _waiting(self, batch: OpenBatch) -> dict[str, _Pending]:
        with self._deps.session_scope() as session:
            rows = store.grouped_requests(session, batch.group_id)
            return {row.request_id: _Pending.of(row) for row in rows}

    def _answered(self, request_id: str) -> bool:
        with self._deps.session_scope() as session:
            return store.answered_in_ledger(session, request_id)

    def _ref(self, item: _Pending) -> str:
        return f"{item.payload['provider']}:{item.payload['model']}"

    def _book(self, item: _Pending, amount: Decimal) -> None:
        """The budget learns the batch's real cost now (its reservation ended at submit)."""
        budget = self._deps.budget
        if budget is None:
            return
        try:
            reservation = budget.reserve(
                amount, campaign_id=item.campaign_id, tier=item.payload.get("tier")
            )
        except BudgetRefused as exc:  # already spent: the reconciler reads it from the ledger
            log.warning("batch_cost_over_budget", request_id=item.request_id, error=str(exc))
            return
        budget.settle(reservation, amount)

    def _finish(
        self, items: Sequence[_Pending], error: str | None, *, resume: bool = False
    ) -> None:
        ids = [item.request_id for item in items]
        if not ids:
            return
        with self._deps.session_scope() as session:
            store.finish_requests(session, ids, store.DONE, error)
            if resume:
                rows = store.requests_by_id(session, ids)
                self.done.resumes += store.resumes(session, rows)
