"""``leadpipe report --html`` rendered by a real headless Chromium: charts, numbers, screenshot."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.models import BudgetEvent, Email, Lead, LLMCall
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHARTS = ("cost-per-day", "cost-per-stage", "savings", "model-mix", "quality", "budget-use")
DAY1 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
# (day offset, stage, provider, model, prompt tokens, completion tokens, cost)
CALLS = [
    (0, "classify", "deepseek", "deepseek-chat", 500, 150, Decimal("0.000300")),
    (0, "analyze", "anthropic", "claude-3-haiku-20240307", 1600, 2400, Decimal("0.003400")),
    (0, "judge", "anthropic", "claude-sonnet-4-20250514", 800, 1200, Decimal("0.020400")),
    (1, "personalize", "openai", "gpt-4o", 600, 900, Decimal("0.010500")),
    (1, "judge", "anthropic", "claude-sonnet-4-20250514", 800, 1200, Decimal("0.020400")),
    (2, "score", "deepseek", "deepseek-chat", 300, 90, Decimal("0.000180")),
]
QUALITIES = ["0.52", "0.71", "0.88", "0.91", "0.93", "0.97", "0.99"]
HOSTILE = "<img src=x onerror=alert(1)>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    return found


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )


def seed(factory: sessionmaker[Session]) -> Decimal:
    with factory() as session, session.begin():
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW], campaign="spring")
        lead_ids = [lead_id for lead_id, _priority in batch.leads]
        campaign_id = session.get_one(Lead, lead_ids[0]).campaign_id
        for i, (day, stage, provider, model, p_tok, c_tok, cost) in enumerate(CALLS):
            session.add(
                LLMCall(
                    request_id=f"req-{i}",
                    journal_key=f"j-{i}",
                    lead_id=lead_ids[0],
                    campaign_id=campaign_id,
                    stage=stage,
                    provider=provider,
                    model=model,
                    prompt_tokens=p_tok,
                    completion_tokens=c_tok,
                    cost_usd=cost,
                    simulated=True,
                    created_at=DAY1 + dt.timedelta(days=day, minutes=7 * i),
                )
            )
        for i, quality in enumerate(QUALITIES):
            session.add(
                Email(
                    lead_id=lead_ids[i % 2],
                    run_id=f"run-{i}",
                    subject="s",
                    body="b",
                    quality=Decimal(quality),
                )
            )
        session.add(
            BudgetEvent(
                period="daily",
                period_start=DAY1 + dt.timedelta(days=1),
                kind="alert",
                level=1,
                spent_usd=Decimal("40"),
                limit_usd=Decimal("50"),
                message=f"daily budget at 80 % {HOSTILE}",
                created_at=DAY1 + dt.timedelta(days=1, minutes=30),
            )
        )
    return sum((c[-1] for c in CALLS), Decimal(0))


def figures(dom: str) -> dict[str, str]:
    pattern = r'<figure[^>]*data-chart="([a-z-]+)"[^>]*>(.*?)</figure>'
    return dict(re.findall(pattern, dom, flags=re.S))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_html_report_renders_every_chart_in_chromium(
    db_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    total = seed(session_factory)
    page = tmp_path / "report.html"
    env = dict(os.environ, LEADPIPE_DATABASE_URL=db_url, LEADPIPE_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "report", "--json", "--html", str(page)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert Decimal(doc["cost_usd"]) == total
    raw = page.read_text(encoding="utf-8")
    # Self-contained: nothing to fetch, no script at all.
    assert not re.search(r"<script|<link|(src|href)=\"https?:", raw)

    dom = run_chromium("--dump-dom", page.as_uri()).stdout
    found = figures(dom)
    assert set(found) == set(CHARTS)
    for name, body in found.items():
        svg = re.search(r"<svg[^>]*>(.*?)</svg>", body, flags=re.S)
        assert svg is not None, name
        assert re.search(r"<(rect|polyline)[^>]*>", svg.group(1)), name
        caption = re.search(r"<figcaption>(.*?)</figcaption>", body, flags=re.S)
        assert caption is not None and caption.group(1).strip(), name
    assert f'data-kpi="cost">${total}</div>' in dom
    assert f'data-kpi="savings">{doc["savings_pct"]} %</div>' in dom
    assert Decimal(doc["savings_pct"]) > 0
    assert 'data-kpi="leads">2</div>' in dom
    assert "SIMULATOR" in dom
    for day in ("2026-03-02", "2026-03-03", "2026-03-04"):
        assert f">{day}</text>" in found["cost-per-day"]
    assert "anthropic:claude-sonnet-4-20250514" in found["model-mix"]
    assert ">judge</text>" in found["savings"] and "% saved" in found["savings"]
    # Seven emails: one below the 0.65 gate, four in the 0.85-1.0 band.
    assert "below 0.65" in found["quality"] and f"of {len(QUALITIES)} emails" in found["quality"]
    assert re.search(r"<polyline points=\"[0-9., ]+\"", found["budget-use"])
    assert "alert (level 1)" in found["budget-use"]
    # Data is text, never markup.
    assert "<img" not in dom and "&lt;img src=x" in dom

    shot = tmp_path / "report.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 50_000
