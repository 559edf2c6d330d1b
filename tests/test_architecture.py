"""Pin the shape of the code base (STYLE R12): which capability may import which, no cycles, and
which modules may build or run SQL (each capability's ``store``, and ``db``).

The rules follow the sub-package docstrings: ``pipeline`` is domain logic grouped by capability,
``workers`` is Celery wiring, ``workers/cli`` the command line on top of it, ``db`` persistence
only and ``simulator`` a separate server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "workers", "db", "simulator")
# Composition roots may read settings; alembic's env.py must find the URL somewhere.
DB_EXEMPT = {"db.migrations.env"}
HTTPX_ALLOWED = ("pipeline.llm.providers", "pipeline.web")
# One data-access module per capability holds its SQL (issue 10 item 4): the capability's
# ``pipeline/<capability>/store.py``, plus the LLM ledger; ``db`` is persistence.
SQL_STORE_NAME = "store"
SQL_STORES_NAMED_OTHERWISE = {"pipeline.llm.ledger"}  # issue 15: the gateway's ledger rows
# Modules allowed to run their own SQL for a while (empty: every query is in a store). The list
# may only shrink: an entry that no longer holds SQL fails the test below.
SQL_NOT_YET_MOVED: set[str] = set()
# Statement builders that belong in a store, and the session/connection calls that run SQL.
SQL_BUILDERS = frozenset({"select", "insert", "update", "delete", "text"})
SQL_CALLS = frozenset({"execute", "query", "scalar", "scalars", "exec_driver_sql"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "versions" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _all_modules()


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports, at any depth in the file (function-level imports too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from pipeline.budget import store`` imports the module ``pipeline.budget.store``
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return found


IMPORTS = {name: _imports(name) for name in MODULES}


def _offenders(importer: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules under ``importer`` importing anything under one of ``forbidden``."""
    bad: dict[str, list[str]] = {}
    for name, imported in IMPORTS.items():
        if name != importer and not name.startswith(importer + "."):
            continue
        hits = sorted(i for i in imported for f in forbidden if i == f or i.startswith(f + "."))
        if hits:
            bad[name] = hits
    return bad


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("pipeline", ("celery", "kombu", "workers", "simulator")),
        ("simulator", ("pipeline", "workers", "db", "celery", "sqlalchemy")),
        ("pipeline.ingest", ("pipeline.llm", "pipeline.budget", "pipeline.stages", "db")),
        (
            "pipeline.budget",
            ("pipeline.llm", "pipeline.stages", "pipeline.reporting", "pipeline.campaigns"),
        ),
        ("pipeline.llm", ("pipeline.stages", "pipeline.reporting", "pipeline.campaigns")),
        ("pipeline.web", ("pipeline.llm", "pipeline.budget", "pipeline.stages", "db")),
        ("pipeline.stages", ("pipeline.campaigns", "pipeline.reporting")),
        ("pipeline.reporting", ("pipeline.stages", "pipeline.campaigns", "pipeline.web")),
        ("workers.app", ("workers.lifecycle", "workers.tasks", "workers.cli")),
    ],
)
def test_import_direction(importer: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(importer, forbidden) == {}


def test_workers_never_import_the_cli() -> None:
    bad = {
        name: hits
        for name, hits in _offenders("workers", ("workers.cli",)).items()
        if not name.startswith("workers.cli")
    }
    assert bad == {}


def test_db_imports_nothing_but_itself() -> None:
    bad = {
        n: h
        for n, h in _offenders("db", ("pipeline", "workers", "celery", "simulator")).items()
        if n not in DB_EXEMPT
    }
    assert bad == {}


def test_httpx_only_at_the_boundary() -> None:
    users = sorted(n for n, imported in IMPORTS.items() if "httpx" in imported)
    assert [u for u in users if not u.startswith(HTTPX_ALLOWED)] == []


def _redis_pipelines(tree: ast.AST) -> set[str]:
    """Names bound to ``<client>.pipeline(...)``: their ``.execute()`` sends Redis commands."""
    names = set()
    for node in ast.walk(tree):
        bound: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            bound, value = node.targets, node.value
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bound, value = [node.optional_vars], node.context_expr
        else:
            continue
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "pipeline"
        ):
            names.update(ast.unparse(target) for target in bound)
    return names


def _sql_uses(name: str) -> list[str]:
    """Where ``name`` builds or runs SQL itself: imported statement builders and SQL calls."""
    tree = ast.parse(MODULES[name].read_text("utf-8"))
    aliases = set()  # names bound to the sqlalchemy package (``import sqlalchemy as sa``)
    redis_pipes = _redis_pipelines(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found += [
                f"{node.lineno}: imports {a.name}" for a in node.names if a.name in SQL_BUILDERS
            ]
        elif isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "sqlalchemy")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            receiver, attr = node.value.id, node.attr
            if receiver in aliases and attr in SQL_BUILDERS:
                found.append(f"{node.lineno}: {receiver}.{attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            receiver = ast.unparse(node.func.value)
            if receiver not in redis_pipes:
                found.append(f"{node.lineno}: {receiver}.{node.func.attr}()")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def _is_store(name: str) -> bool:
    parts = name.split(".")
    is_capability_store = len(parts) == 3 and parts[0] == "pipeline" and parts[2] == SQL_STORE_NAME
    return is_capability_store or name in SQL_STORES_NAMED_OTHERWISE


def test_sql_lives_in_the_stores() -> None:
    """Outside ``db``, only a capability's store module builds or runs SQL."""
    bad = {
        name: uses
        for name in MODULES
        if not name.startswith("db.") and name != "db"
        if not _is_store(name) and name not in SQL_NOT_YET_MOVED
        if (uses := _sql_uses(name))
    }
    assert bad == {}


def test_sql_allowlist_only_shrinks() -> None:
    """An allowlisted module whose SQL has moved to its store must leave the allowlist."""
    assert sorted(n for n in SQL_NOT_YET_MOVED if n not in MODULES or not _sql_uses(n)) == []


def test_no_import_cycles() -> None:
    """Depth-first search over project modules; any back edge is a cycle."""
    graph = {
        name: sorted({i for i in imported if i in MODULES and i != name and not _parent(i, name)})
        for name, imported in IMPORTS.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    assert cycles == []


def _parent(candidate: str, name: str) -> bool:
    """``pipeline.budget`` is the package of ``pipeline.budget.guard``: not a cycle edge."""
    return name.startswith(candidate + ".")


def test_every_package_says_what_it_owns() -> None:
    silent = []
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text("utf-8")))
        if not doc or not doc.strip():
            silent.append(name)
    assert silent == []


def test_no_format_skips_without_a_reason() -> None:
    unexplained = []
    for package in (*PACKAGES, "tests", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            lines = path.read_text("utf-8").splitlines()
            for i, line in enumerate(lines):
                if "fmt: skip" in line and path != Path(__file__):
                    context = "\n".join(lines[max(0, i - 12) : i])
                    if "left unformatted" not in context:
                        unexplained.append(f"{path.relative_to(ROOT)}:{i + 1}")
    assert unexplained == []
