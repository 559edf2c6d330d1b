"""Issue 14 item 6: a group of more than 20 requests through the batch path to a REAL model.

The self-hosted endpoint is the real llama.cpp server (SmolLM2-135M, ``make real-model``), an
OpenAI-compatible server like vLLM or RunPod's ``/openai/v1``. Analyze (batchable) runs on it;
the other stages run on the simulator (labelled), so the test is about the batch path: one group
of more than 20 requests, each answer in the ledger with the server's real token counts, and
every lead continuing its chain to the end. The model is tiny: an answer outside the contract
is recorded ``invalid_output`` and that lead's analyze goes to the sync path, as designed.

Needs LEADPIPE_REAL_MODEL_URL (``eval "$(scripts/real_model.sh env)"``; ``make test`` does it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus
from db.models import BatchGroup, BatchRequest, Lead, LLMCall
from tests.e2e.conftest import ROOT, E2EStack, leads_done, real_model_server, stop, wait_until
from tests.e2e.test_batch_path import assert_every_lead_continued, leads_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.real_model, pytest.mark.timeout(2400)]
LEADS = 28


def _routing_table(path: Path, model: str) -> Path:
    """The packaged table, analyze on the real model alone and batchable on its endpoint."""
    ref = f"vllm:{model}"
    packaged = (ROOT / "pipeline" / "llm" / "routing.toml").read_text("utf-8")
    head, _, _ = packaged.partition("[batch]")
    before, _, rest = head.partition("[stages.analyze]")
    _, _, after = rest.partition("[stages.demo]")
    before = before.replace("[model_info]", f'small = "{ref}"\n\n[model_info]', 1)
    before = before.replace("[prices]\n", f'[prices]\n"{ref}" = ["0.02", "0.02"]\n', 1)
    path.write_text(
        before
        + '[stages.analyze]\nmax_output_tokens = 120\nladder = ["small"]\n'
        + "start = { default = 0 }\n\n[stages.demo]"
        + after
        + "[batch]\nthreshold = 20\nwindow_s = 20.0\nmax_group = 100\n"
        + "[batch.endpoints.vllm]\nconcurrency = 2\ncold_start_s = 60\n"
        + '[batch.stages.analyze]\nmodels = ["small"]\n',
        "utf-8",
    )
    return path


def test_a_group_of_more_than_20_on_the_real_model_and_every_lead_continues(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    url, model = real_model_server()
    real = stack.with_env(
        LEADPIPE_ROUTING_TABLE=str(_routing_table(tmp_path / "routing.toml", model)),
        LEADPIPE_PROVIDERS__VLLM__BASE_URL=url,
        LEADPIPE_PROVIDERS__VLLM__SCHEMA_MODE="json_object",  # llama-cpp-python's schema form
        LEADPIPE_PROVIDERS__VLLM__TIMEOUT_S="600",  # one slot on 2 shared cores: requests queue
        LEADPIPE_WEB__MAX_TEXT_CHARS="600",
        LEADPIPE_VISIBILITY_TIMEOUT_S="1800",
        LEADPIPE_STAGE_LEASE_S="900",
    )
    real.cli_ok("enqueue", str(leads_file(tmp_path / "leads.csv", LEADS)), "--campaign", "real")
    with session_factory() as session:
        total = session.scalar(select(func.count()).select_from(Lead)) or 0
    worker = real.worker(tmp_path / "worker.log")
    try:
        wait_until("every lead done", lambda: leads_done(session_factory) == total, 2100, 2)
    finally:
        stop(worker)
    with session_factory() as session:
        assert_every_lead_continued(session)
        groups = session.scalars(select(BatchGroup)).all()
        assert max(g.size for g in groups) > 20, [g.size for g in groups]
        assert {g.backend for g in groups} == {"selfhosted"}
        requests = session.scalars(select(BatchRequest)).all()
        assert {r.status for r in requests} <= {"done", "sync"}
        answered = [r for r in requests if r.status == "done"]
        assert len(answered) > 20, [(r.status, r.error) for r in requests]
        rows = session.scalars(select(LLMCall).where(LLMCall.routing_reason.like("%batch"))).all()
        by_key = {r.journal_key: r for r in rows}
        assert set(by_key) == {r.request_id for r in answered}
        for row in rows:  # the real server's answer and token counts, never simulated
            assert row.provider == "vllm" and row.model == model and not row.simulated
            assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.cost_usd > 0
            assert row.status in (CallStatus.OK, CallStatus.INVALID_OUTPUT)
