"""`make demo` as a newcomer runs it: the real `leadpipe demo` command, every part it starts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_the_sample_leads_to_approved_emails(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", "--leads", str(ROOT / "samples/leads.csv")],
        cwd=tmp_path,
        env=dict(os.environ, LEADPIPE_HOME=str(tmp_path)),  # the run's home: tmp_path/demos/…
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SIMULATOR" in result.stderr + result.stdout
    assert "everything it started has been stopped" in result.stderr + result.stdout
    emails = list(tmp_path.rglob("emails.csv"))
    assert len(emails) == 1, emails
    with emails[0].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the demo exported no approved email"
    assert all(row["subject"].strip() and row["body"].strip() for row in rows)
