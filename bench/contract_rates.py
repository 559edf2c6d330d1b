"""How often real model answers met their stage's contract, from the ledger.

Per stage, every model call that reached a provider and was answered (journal key) lands in one
bucket: ``first`` (the first answer passed), ``repaired`` (passed after the one repair call),
``next_rung`` (a later model of the chain passed), ``fell_back`` (no answer passed: the stage used
its deterministic fallback or held the email). The real-model e2e test prints this table. Usage:

    python bench/contract_rates.py [--run RUN_ID] [--json]   # LEADPIPE_DATABASE_URL's ledger
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db.enums import CallStatus  # noqa: E402 - after the path set-up above
from db.models import LLMCall  # noqa: E402
from pipeline.llm.contracts import REPAIR_SUFFIX  # noqa: E402

BUCKETS = ("first", "repaired", "next_rung", "fell_back")
ANSWERED = (CallStatus.OK, CallStatus.INVALID_OUTPUT)


def contract_rates(session: Session, run_id: str | None = None) -> dict[str, Counter[str]]:
    """Stage -> bucket -> number of calls (journal keys) that ended in that bucket."""
    query = select(LLMCall).where(LLMCall.cache_hit.is_(False)).order_by(LLMCall.id)
    if run_id is not None:
        query = query.where(LLMCall.run_id == run_id)
    calls: dict[str, list[LLMCall]] = defaultdict(list)
    for row in session.scalars(query):
        if row.status in ANSWERED:
            calls[row.journal_key].append(row)
    rates: dict[str, Counter[str]] = defaultdict(Counter)
    for rows in calls.values():
        rates[rows[0].stage][_bucket(rows)] += 1
    return dict(rates)


def _bucket(rows: list[LLMCall]) -> str:
    ok = next((r for r in rows if r.status == CallStatus.OK), None)
    if ok is None:
        return "fell_back"
    if ok is rows[0]:
        return "first"
    if ok.prompt_version.endswith(REPAIR_SUFFIX):
        return "repaired"
    return "next_rung"


def format_rates(rates: dict[str, Counter[str]]) -> str:
    """A plain-text table: counts and shares per stage."""
    lines = [f"{'stage':<12}{'calls':>6}  " + "  ".join(f"{b:>16}" for b in BUCKETS)]
    for stage in sorted(rates):
        counts = rates[stage]
        total = sum(counts.values())
        cells = [f"{counts[b]:>5} ({100 * counts[b] / total:5.1f}%)" for b in BUCKETS]
        lines.append(f"{stage:<12}{total:>6}  " + "  ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    """Print the table for ``LEADPIPE_DATABASE_URL`` (or ``--url``)."""
    from pipeline.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help="database URL (default: settings)")
    parser.add_argument("--run", default=None, help="only this run id")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    engine = create_engine(args.url or get_settings().resolved_database_url())
    with Session(engine) as session:
        rates = contract_rates(session, args.run)
    if args.json:
        print(json.dumps({stage: dict(counts) for stage, counts in rates.items()}, indent=2))
    else:
        print(format_rates(rates))


if __name__ == "__main__":
    main()
