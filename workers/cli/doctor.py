"""``leadpipe doctor``: is this home ready to run leads? (database, migrations, Redis, providers)

The same checks run, quietly unless something is wrong, at the start of ``worker`` and
``enqueue``, so a newcomer hears about a missing provider before any lead fails for it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pipeline.settings import Settings


err = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: what, whether it passed, and what to do when it did not."""

    name: str
    ok: bool
    detail: str


def database_checks(settings: Settings) -> list[Check]:
    """The database answers, and its schema is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config
    from db.session import make_engine, ping

    url = settings.resolved_database_url()
    where = url if url.startswith("sqlite") else url.split("@")[-1]
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return [Check("database", False, f"{where} does not exist yet: leadpipe db upgrade")]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ping(conn)
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # any driver error is the answer, not a crash
        return [Check("database", False, f"{where}: {type(exc).__name__}: {exc}".splitlines()[0])]
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    at_head = Check("migrations", True, f"at {head}")
    if current != head:
        at_head = Check("migrations", False, f"at {current}, newest {head}: leadpipe db upgrade")
    return [Check("database", True, where), at_head]


def redis_check(settings: Settings) -> Check:
    """The broker answers (the embedded one may simply not be started yet)."""
    import redis

    from pipeline.settings import embedded_redis_port

    url = settings.resolved_redis_url()
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
        return Check("redis", True, url)
    except redis.RedisError as exc:
        if settings.redis_url is None:
            port = embedded_redis_port(settings.resolved_home())
            return Check("redis", True, f"embedded, not running (port {port}): started on demand")
        return Check("redis", False, f"{url}: {exc}")
    finally:
        client.close()


def provider_check(settings: Settings) -> Check:
    """Every model in the routing table has a provider: a key, a base URL or the simulator."""
    from pipeline.errors import ConfigError
    from pipeline.llm.providers import build_providers, make_http_client
    from pipeline.llm.routing import load_routing_table

    try:
        table = load_routing_table(settings.routing_table)
    except ConfigError as exc:
        return Check("providers", False, str(exc))
    refs = sorted({ref for routes in table.stages.values() for ref in routes.ladder})
    http = make_http_client()
    try:
        names = {ref.split(":", 1)[0] for ref in refs}
        served = set(
            build_providers(
                settings.providers, simulator_url=settings.simulator_url, http=http, names=names
            )
        )
    finally:
        http.close()
    missing = [ref for ref in refs if ref.split(":", 1)[0] not in served]
    if not missing:
        how = "simulator" if settings.simulator_url else "keys or base URLs"
        return Check("providers", True, f"all {len(refs)} models served ({how})")
    stranded = [
        stage.value
        for stage, routes in table.stages.items()
        if all(ref in missing for ref in routes.ladder)
    ]
    detail = f"{len(missing)} of {len(refs)} models have no provider: {', '.join(missing)}"
    if stranded:
        detail += f"; NO model at all for: {', '.join(stranded)} (those leads will fail)"
    detail += (
        ". Set LEADPIPE_PROVIDERS__<NAME>__API_KEY, or LEADPIPE_SIMULATOR_URL to run offline "
        "against `leadpipe simulator`"
    )
    return Check("providers", False, detail)


def all_checks(settings: Settings) -> list[Check]:
    """Every readiness check, in the order an operator fixes them."""
    return [*database_checks(settings), redis_check(settings), provider_check(settings)]


def warn_if_not_ready(checks: list[Check]) -> None:
    """Print failing checks loudly on stderr (the start of worker and enqueue)."""
    for check in checks:
        if not check.ok:
            err.print(f"[bold red]NOT READY[/] {check.name}: ", end="", soft_wrap=True)
            err.print(check.detail, markup=False, highlight=False)


def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the database, migrations, Redis and that every routed model has a provider."""
    from pipeline.settings import get_settings

    settings = get_settings()
    checks = all_checks(settings)
    if as_json:
        doc = {"home": str(settings.resolved_home()), "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(doc | {"ready": all(c.ok for c in checks)}) + "\n")
    else:
        out = Console(soft_wrap=True)
        out.print(f"home {settings.resolved_home()}", markup=False, highlight=False)
        for check in checks:
            mark = "[green]ok[/]  " if check.ok else "[bold red]FAIL[/]"
            out.print(f"{mark} {check.name:<10} ", end="")
            out.print(check.detail, markup=False, highlight=False)
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)
