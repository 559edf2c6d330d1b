"""Issue 11: a 10-lead batch through real workers and a REAL model (llama.cpp, SmolLM2-135M).

Every stage is routed to the model server `make real-model` starts, as a self-hosted ``vllm:``
provider (no simulator anywhere). The model is tiny, so many of its answers are wrong: the test
checks that the pipeline says so truthfully: every lead ends approved, held with a reason or failed
with a reason (never for a slow answer), no wrong-shaped answer is stored as a success, the ledger
has the server's real token counts, and no lead loses its template email. It writes, per stage,
how many answers passed the contract first time, after the repair call, or fell back, to
bench/results/real-model-contracts.txt.

Needs LEADPIPE_REAL_MODEL_URL (``eval "$(scripts/real_model.sh env)"``; ``make test`` does it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.contract_rates import contract_rates, format_rates
from db.enums import CallStatus, EmailStatus, LeadStatus, Stage, StageStatus
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.campaigns.batches import TERMINAL
from pipeline.llm.contracts import contract_for, validate
from pipeline.stages.guard import email_problem
from tests.e2e.conftest import ROOT, E2EStack, leads_done, real_model_server, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.real_model, pytest.mark.timeout(2400)]
LEADS = 10
RESULTS = ROOT / "bench" / "results" / "real-model-contracts.txt"
"""The per-stage contract figures of the last run (quoted in the README)."""
# Output caps sized for a 135M model on 2 cores: enough for each answer's JSON, no more.
# Decoding runs at about 20 tokens/s, so a rambling answer costs its whole cap.
CAPS = {"classify": 60, "score": 80, "analyze": 160, "demo": 220, "personalize": 260, "judge": 110}


def _routing_table(path: Path, model: str) -> Path:
    """Every stage on the one real model (ladder of one rung: its fallback is deterministic)."""
    ref = f"vllm:{model}"
    lines = [
        "[models]",
        f'small = "{ref}"',
        "[model_info]",
        'small = { class = "ultra-cheap", latency_ms = 5000, quality = 0.3 }',
        "[prices]",
        f'"{ref}" = ["0.02", "0.02"]',
    ]
    for stage, cap in CAPS.items():
        lines += [
            f"[stages.{stage}]",
            f"max_output_tokens = {cap}",
            'ladder = ["small"]',
            "start = { default = 0 }",
        ]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_a_batch_on_a_real_model_ends_truthfully(
    stack: E2EStack,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    url, model = real_model_server()
    lines = (ROOT / "samples" / "leads.csv").read_text("utf-8-sig").splitlines()
    batch = tmp_path / "leads.csv"
    batch.write_text("\n".join([lines[0], *lines[1 : 1 + LEADS]]) + "\n", "utf-8")
    real = stack.with_env(
        LEADPIPE_SIMULATOR_URL=None,  # no simulator: a provider without a real endpoint is out
        LEADPIPE_ROUTING_TABLE=str(_routing_table(tmp_path / "routing.toml", model)),
        LEADPIPE_PROVIDERS__VLLM__BASE_URL=url,
        LEADPIPE_PROVIDERS__VLLM__SCHEMA_MODE="json_object",  # llama-cpp-python's schema form
        LEADPIPE_PROVIDERS__VLLM__TIMEOUT_S="300",  # one request at a time on 2 cores
        LEADPIPE_WEB__MAX_TEXT_CHARS="800",
        LEADPIPE_VISIBILITY_TIMEOUT_S="900",
        LEADPIPE_STAGE_LEASE_S="600",
        LEADPIPE_WORKER_CONCURRENCY="3",
    )
    real.cli_ok("enqueue", str(batch), "--campaign", "real-model")
    with session_factory() as session:
        total = len(session.scalars(select(Lead.id)).all())
    assert total >= LEADS - 2  # the sample's bad rows are rejected at enqueue
    started = time.monotonic()
    worker = real.worker(tmp_path / "worker.log")
    try:
        wait_until(
            "every lead in a terminal state",
            lambda: leads_done(session_factory) == total,
            timeout=2100,
            interval=2,
        )
    finally:
        stop(worker)
    elapsed = time.monotonic() - started
    with session_factory() as session:
        _check_outcomes(session)
        _check_ledger(session)
        _check_stage_outputs(session)
        rates = contract_rates(session)
        calls = session.scalars(select(LLMCall)).all()
    summary = f"real model {model}: {total} leads in {elapsed:.0f} s, {len(calls)} ledger rows"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"{summary}\n{format_rates(rates)}\n", "utf-8")
    record_property("contract_rates", RESULTS.read_text("utf-8"))
    assert rates, "no call reached the real model"


def _check_outcomes(session: Session) -> None:
    """Approved, held with a reason, or failed with a reason that is not a slow answer."""
    for lead in session.scalars(select(Lead)):
        assert lead.status in TERMINAL, (lead.company, lead.status)
        if lead.status == LeadStatus.FAILED:
            assert lead.error and "timeout" not in lead.error.lower(), lead.error
            continue
        [email] = session.scalars(select(Email).where(Email.lead_id == lead.id)).all()
        assert email.subject.strip() and email.body.strip()  # the template is never lost
        if email.status == EmailStatus.APPROVED:
            assert lead.status == LeadStatus.COMPLETED
            problem = email_problem(
                email.subject,
                email.body,
                lead_website=lead.website,
                sender_website=None,
                notes=lead.notes,
            )
            assert problem is None, problem
        else:
            review = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead.id))
            assert [r.reason for r in review if r.reason.strip()], lead.company


def _check_ledger(session: Session) -> None:
    """Real token counts, never simulated; no wrong-shaped answer recorded as ok."""
    answered = session.scalars(
        select(LLMCall).where(
            LLMCall.cache_hit.is_(False),
            LLMCall.status.in_([CallStatus.OK, CallStatus.INVALID_OUTPUT]),
        )
    ).all()
    assert answered
    for call in answered:
        assert call.prompt_tokens > 0 and call.completion_tokens > 0 and not call.simulated
        assert call.response is not None  # an invalid answer is kept for diagnosis
        if call.status == CallStatus.OK:
            checked = validate(contract_for(Stage(call.stage)), str(call.response["text"]))
            assert not isinstance(checked, str), (call.stage, checked)


def _check_stage_outputs(session: Session) -> None:
    """A finished stage holds a right-shaped output or says it fell back and why."""
    for row in session.scalars(select(StageResult).where(StageResult.status == StageStatus.DONE)):
        out = row.output
        if row.stage == Stage.ANALYZE.value:
            assert out["summary"].strip()
            assert out["source"] != "fallback" or out["fallback_reason"]
        if row.stage == Stage.DEMO.value:
            assert out["html"].strip() and out["title"].strip()
        if row.stage == Stage.PERSONALIZE.value:
            assert out["candidates"]
            for cand in out["candidates"]:
                assert isinstance(cand["subject"], str) and isinstance(cand["body"], str)
        if row.stage in (Stage.CLASSIFY.value, Stage.SCORE.value):
            assert out["source"] != "rules-fallback" or out["fallback_reason"]
