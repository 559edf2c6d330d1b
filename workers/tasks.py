"""The six stage tasks: thin adapters from a message to ``pipeline.stages.<x>.run`` (R1)."""

from __future__ import annotations

from pipeline.stages import analyze, classify, demo, judge, personalize, score
from workers.app import app
from workers.base import PipelineTask
from workers.lifecycle import process_deps
from workers.queues import Queue


@app.task(base=PipelineTask, name="leads.classify", queue=Queue.CLASSIFY)
def classify_lead(*, lead_id: int, run_id: str) -> None:
    classify.run(process_deps(), lead_id=lead_id, run_id=run_id)


@app.task(base=PipelineTask, name="leads.score", queue=Queue.SCORE)
def score_lead(*, lead_id: int, run_id: str) -> None:
    score.run(process_deps(), lead_id=lead_id, run_id=run_id)


@app.task(base=PipelineTask, name="leads.analyze", queue=Queue.ANALYZE)
def analyze_lead(*, lead_id: int, run_id: str) -> None:
    analyze.run(process_deps(), lead_id=lead_id, run_id=run_id)


@app.task(base=PipelineTask, name="leads.demo", queue=Queue.DEMO)
def demo_lead(*, lead_id: int, run_id: str) -> None:
    demo.run(process_deps(), lead_id=lead_id, run_id=run_id)


@app.task(base=PipelineTask, name="leads.personalize", queue=Queue.PERSONALIZE)
def personalize_lead(*, lead_id: int, run_id: str) -> None:
    personalize.run(process_deps(), lead_id=lead_id, run_id=run_id)


@app.task(base=PipelineTask, name="leads.judge", queue=Queue.JUDGE)
def judge_lead(*, lead_id: int, run_id: str) -> None:
    judge.run(process_deps(), lead_id=lead_id, run_id=run_id)
