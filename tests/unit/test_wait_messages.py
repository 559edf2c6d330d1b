"""What ``enqueue --wait`` says when a batch stops moving (pure parts of workers/cli/progress)."""

from __future__ import annotations

from typing import Any

from workers.cli.progress import WaitExit, _Watch, detail_text, stall_messages


def _progress(**status: int) -> dict[str, Any]:
    return {"by_status": status, "by_stage": {}}


def test_stall_messages_name_paused_queues_and_missing_workers() -> None:
    paused = {"classify": "budget: daily 100 %"}
    both = stall_messages(42, paused, lambda: 0)
    assert set(both) == {"paused", "no-worker"}
    assert "42 s" in both["paused"] and "classify (budget: daily 100 %)" in both["paused"]
    assert "`leadpipe worker`" in both["no-worker"]
    busy = stall_messages(31, {}, lambda: 2)
    assert set(busy) == {"busy"} and "2 worker(s) answer" in busy["busy"]
    assert set(stall_messages(31, paused, lambda: 1)) == {"paused"}


def test_watch_measures_idle_time_and_resets_warnings_on_progress() -> None:
    watch = _Watch()
    assert watch.observe(_progress(queued=3), now=100.0) == 0
    watch.warned.add("no-worker")
    assert watch.observe(_progress(queued=3), now=130.0) == 30
    assert watch.warned == {"no-worker"}
    assert watch.observe(_progress(queued=2, completed=1), now=131.0) == 0
    assert watch.warned == set()


def test_detail_text_shows_outcomes_and_paused_queues() -> None:
    progress = {"approved": 2, "held": 1, "parked": 3, "failed": 4, "in_progress": 5}
    text = detail_text(progress, {"judge": "manual"})
    assert "approved=2 held=1 parked=3 failed=4 waiting=5" in text and "paused: judge" in text
    assert "paused" not in detail_text(progress, {})


def test_exit_codes_are_stable() -> None:
    assert [int(c) for c in WaitExit] == [0, 1, 3, 130]
