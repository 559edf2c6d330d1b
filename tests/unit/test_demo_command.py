"""``make demo`` starts its processes through this command line; it must be runnable."""

from __future__ import annotations

import subprocess

from workers.cli.demo import LEADPIPE


def test_the_demo_runs_a_real_leadpipe_command_line() -> None:
    result = subprocess.run(
        [*LEADPIPE, "simulator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--quality" in result.stdout
