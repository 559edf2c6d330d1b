"""docker-compose.yml validates with Debian's docker-compose 1.29 and has every queue group."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
QUEUE_GROUPS = {
    "worker-fast": {"classify", "score", "personalize", "judge", "ops"},
    "worker-analysis": {"analyze", "demo"},
    "worker-batch": {"batch"},
}


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is missing: apt-get install -y --no-install-recommends docker-compose"
        )
    return found


def compose_config(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), "-f", str(path), "--project-directory", str(ROOT), "config", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    quiet = compose_config(COMPOSE, "-q")
    assert quiet.returncode == 0, quiet.stderr
    full = compose_config(COMPOSE)
    assert full.returncode == 0, full.stderr
    # YAML to JSON with docker-compose's own interpreter, which always has PyYAML.
    python = Path(docker_compose()).read_text(errors="replace").splitlines()[0].removeprefix("#!")
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    converted = subprocess.run(
        [*python.split(), "-c", to_json],
        input=full.stdout,
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, Any] = json.loads(converted.stdout)
    return doc


def test_every_service_is_there_with_a_health_check(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    expected = {"postgres", "redis", "simulator", "migrate", "beat", "flower", *QUEUE_GROUPS}
    assert set(services) == expected
    for name in expected - {"migrate"}:
        assert services[name]["healthcheck"]["test"], name


def test_each_worker_consumes_its_queue_group(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    seen: set[str] = set()
    for name, queues in QUEUE_GROUPS.items():
        command = services[name]["command"]
        assert command[0] == "worker" and "-Q" in command
        group = set(command[command.index("-Q") + 1].split(","))
        assert group == queues, name
        assert not group & seen, "a queue is consumed by two groups"
        seen |= group
        env = services[name]["environment"]
        assert env["LEADPIPE_REDIS_URL"] == "redis://redis:6379/0"
        assert env["LEADPIPE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_flower_has_no_default_password(resolved: dict[str, Any]) -> None:
    flower = resolved["services"]["flower"]
    assert flower["command"][:3] == ["flower", "--address", "0.0.0.0"]
    assert not flower["environment"].get("LEADPIPE_FLOWER_PASSWORD")
    assert (ROOT / "deploy" / "leadpipe.env.example").is_file()
    assert (ROOT / "Dockerfile").is_file()


def test_the_validator_rejects_keys_newer_than_compose_1_29(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text().replace(
        "      retries: 10\n", "      retries: 10\n      start_interval: 1s\n", 1
    )
    bad.write_text(text)
    assert compose_config(bad, "-q").returncode != 0
