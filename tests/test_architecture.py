"""Pin the shape of the code base (STYLE R12): import directions and module size."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Composition roots may read settings; alembic's env.py must find the URL somewhere.
DB_EXEMPT = {ROOT / "db" / "migrations" / "env.py"}
HTTPX_ALLOWED = ("pipeline/providers/", "pipeline/web.py")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pipeline_never_imports_celery_or_workers() -> None:
    offenders = [p for p in _modules("pipeline") if _imports(p) & {"celery", "workers", "kombu"}]
    assert offenders == []


def test_db_imports_nothing_from_pipeline_or_workers() -> None:
    offenders = [
        p
        for p in _modules("db")
        if p not in DB_EXEMPT and _imports(p) & {"pipeline", "workers", "celery"}
    ]
    assert offenders == []


def test_httpx_only_at_the_boundary() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for pkg in ("pipeline", "db", "workers")
        for p in _modules(pkg)
        if "httpx" in _imports(p) and not p.relative_to(ROOT).as_posix().startswith(HTTPX_ALLOWED)
    ]
    assert offenders == []


def test_module_size_caps() -> None:
    too_long = {
        p.relative_to(ROOT).as_posix(): n
        for pkg in ("pipeline", "db", "workers")
        for p in _modules(pkg)
        if "versions" not in p.parts
        and (n := len(p.read_text("utf-8").splitlines())) > (150 if pkg == "workers" else 400)
    }
    assert too_long == {}
