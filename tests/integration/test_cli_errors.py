"""CLI misuse through the real command: one line naming the setting and address, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_cli as _cli
from tests.cli import service_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DB_DOWN = "postgresql+psycopg://ops:hunter2@127.0.0.1:1/leadpipe"
REDIS_DOWN = "redis://127.0.0.1:1/0"
ENQUEUE = ("enqueue", str(ROOT / "samples" / "leads.jsonl"), "--campaign", "errs")


@pytest.fixture
def env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return service_env(
        db_url,
        redis_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
        # Providers are configured, so the only complaint is the service under test.
        LEADPIPE_SIMULATOR_URL="http://127.0.0.1:9/v1",
        COLUMNS="60",  # a narrow terminal must not wrap the line either
    )


CASES = [
    (("status", "x"), {"LEADPIPE_DATABASE_URL": DB_DOWN}, "LEADPIPE_DATABASE_URL", "127.0.0.1:1"),
    (("report",), {"LEADPIPE_DATABASE_URL": DB_DOWN}, "LEADPIPE_DATABASE_URL", "ops:***@"),
    (ENQUEUE, {"LEADPIPE_DATABASE_URL": DB_DOWN}, "LEADPIPE_DATABASE_URL", "127.0.0.1:1"),
    (("worker",), {"LEADPIPE_DATABASE_URL": DB_DOWN}, "LEADPIPE_DATABASE_URL", "127.0.0.1:1"),
    (("queues", "status"), {"LEADPIPE_REDIS_URL": REDIS_DOWN}, "LEADPIPE_REDIS_URL", REDIS_DOWN),
    (("budget", "status"), {"LEADPIPE_REDIS_URL": REDIS_DOWN}, "LEADPIPE_REDIS_URL", REDIS_DOWN),
    (("worker",), {"LEADPIPE_REDIS_URL": REDIS_DOWN}, "LEADPIPE_REDIS_URL", REDIS_DOWN),
    (ENQUEUE, {"LEADPIPE_REDIS_URL": "::not-a-url"}, "LEADPIPE_REDIS_URL", "::not-a-url"),
    (("status", "x"), {"LEADPIPE_DATABASE_URL": "nonsense"}, "LEADPIPE_DATABASE_URL", "nonsense"),
    (("report",), {"LEADPIPE_ROUTING_TABLE": "/nonexistent/r.toml"}, "ROUTING_TABLE", "r.toml"),
    (("worker",), {"LEADPIPE_ROUTING_TABLE": "/"}, "LEADPIPE_ROUTING_TABLE", "directory"),
]


@pytest.mark.parametrize(("args", "override", "setting", "address"), CASES)
def test_a_service_misuse_is_one_line_and_exit_2(
    env: dict[str, str], args: tuple[str, ...], override: dict[str, str], setting: str, address: str
) -> None:
    result = _cli({**env, **override}, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and setting in lines[0] and address in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(env: dict[str, str]) -> None:
    result = _cli({**env, "LEADPIPE_DATABASE_URL": DB_DOWN}, "--debug", "status", "x")
    assert result.returncode == 1
    assert "OperationalError" in result.stderr and result.stderr.count("\n") > 20
