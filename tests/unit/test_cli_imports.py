"""``leadpipe --help`` stays fast (issue 15): the command modules import nothing heavy up front."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer.main
from typer.testing import CliRunner

from pipeline.llm.routing import Strategy
from workers.cli.main import StrategyChoice, app

HEAVY = ("sqlalchemy", "alembic", "celery", "genai_prices", "pipeline.settings", "redis", "jinja2")


def test_help_imports_no_database_broker_or_price_library() -> None:
    code = (
        "import json, sys\n"
        "sys.argv = ['leadpipe', '--help']\n"
        "from workers.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}]\n"
        "sys.stderr.write(json.dumps(sorted(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Usage" in result.stdout and "enqueue" in result.stdout
    assert json.loads(result.stderr) == []


def test_strategy_choices_are_the_routing_strategies() -> None:
    assert [s.value for s in StrategyChoice] == [s.value for s in Strategy]


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            found.extend(_commands(command, (*prefix, name)))
    return found


def test_every_command_still_renders_its_help() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert len(commands) > 20
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output
