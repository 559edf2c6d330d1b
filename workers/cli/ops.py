"""``leadpipe worker``, ``simulator``, ``db`` and ``demo``: starting the processes."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from workers.queues import ALL_QUEUES

db = typer.Typer(help="Database schema.", no_args_is_help=True)


def worker(
    queues: Annotated[str, typer.Option("-Q", "--queues")] = ",".join(ALL_QUEUES),
    concurrency: Annotated[int | None, typer.Option("-c", "--concurrency")] = None,
    pool: Annotated[str, typer.Option("-P", "--pool")] = "threads",
    hostname: Annotated[str, typer.Option("-n", "--hostname")] = "leadpipe@%h",
    loglevel: Annotated[str, typer.Option("--loglevel")] = "INFO",
    events: Annotated[
        bool,
        typer.Option(
            "--events/--no-events",
            "-E",
            help="send task events from the start; off by default: Flower turns them on while "
            "it runs (every 5 s), and unheard events cost about 6 % of a worker's CPU",
        ),
    ] = False,
) -> None:
    """Run a Celery worker (threads pool: the stages wait on the network, not the CPU)."""
    from pipeline.batch.config import load_batch_policy
    from pipeline.errors import ConfigError
    from pipeline.llm.routing import load_routing_table
    from pipeline.logs import set_process_level
    from pipeline.settings import get_settings
    from workers.app import app
    from workers.cli.embedded import ensure_embedded_redis
    from workers.cli.errors import require_services

    try:  # --loglevel applies to leadpipe's own lines as well as Celery's
        set_process_level(loglevel)
    except ValueError as exc:
        typer.echo(f"error: --loglevel: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = get_settings()
    notice = ensure_embedded_redis(settings)
    if notice:
        typer.echo(notice, err=True)
    try:  # an ops-edited routing table is checked before the worker takes any task
        table = load_routing_table(settings.routing_table)
        load_batch_policy(settings.routing_table, table.catalog.knows)  # its [batch] too
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    require_services(settings)  # Celery would retry a dead broker forever and look healthy

    from workers.cli.doctor import database_checks, provider_check, warn_if_not_ready

    warn_if_not_ready([*database_checks(settings), provider_check(settings)])
    app.conf.worker_concurrency = concurrency or settings.worker_concurrency  # pool size
    argv = [
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-n",
        hostname,
        *(["-E"] if events else []),
        "--loglevel",
        loglevel,
        "-c",
        str(concurrency or settings.worker_concurrency),
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)


def simulator(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8011,
    latency_scale: Annotated[float, typer.Option(help="1.0 = realistic latencies")] = 1.0,
    error_rate: Annotated[float, typer.Option(help="fraction of calls failing")] = 0.0,
    seed: Annotated[int | None, typer.Option()] = None,
    quality: Annotated[
        str, typer.Option(help="good, or weak: about 38 % of answers wrong like a small model's")
    ] = "good",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="KIND=RATE over the quality preset (repeatable); kinds: wrong_keys, prose, "
            "truncated, missing_fields, slow, unauthorized"
        ),
    ] = None,
    fault_model: Annotated[
        list[str] | None, typer.Option(help="only these models (substrings) answer badly")
    ] = None,
    slow_tail_s: Annotated[float, typer.Option(help="extra seconds of a 'slow' answer")] = 20.0,
    rate_limit: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=N: N requests per --rate-window-s, then 429 (repeatable)"),
    ] = None,
    rate_window_s: Annotated[float, typer.Option(help="window of --rate-limit")] = 60.0,
    batch_delay_s: Annotated[
        float, typer.Option(help="seconds a provider batch (/v1/batches) takes to complete")
    ] = 0.0,
    batch_error_rate: Annotated[
        float, typer.Option(help="fraction of requests inside a batch that fail on their own")
    ] = 0.0,
    slots: Annotated[
        int, typer.Option(help="self-hosted mode: answer at most this many at once (0: no cap)")
    ] = 0,
    per_token_ms: Annotated[float, typer.Option(help="latency per completion token")] = 8.0,
) -> None:
    """Serve the offline provider SIMULATOR (OpenAI- and Anthropic-compatible, no real model)."""
    from simulator import SimulatorConfig, SimulatorServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = SimulatorConfig(
            latency_scale=latency_scale,
            error_rate=error_rate,
            seed=seed,
            quality=quality,
            fault_rates=_fault_rates(fault or []),
            fault_models=tuple(fault_model or ()),
            slow_tail_s=slow_tail_s,
            rate_limits=_rate_limits(rate_limit or []),
            rate_window_s=rate_window_s,
            batch_delay_s=batch_delay_s,
            batch_error_rate=batch_error_rate,
            slots=slots,
            per_token_ms=per_token_ms,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    SimulatorServer(host=host, port=port, config=config).serve_forever()


def _rate_limits(pairs: list[str]) -> dict[str, int]:
    limits = {}
    for pair in pairs:
        model, _, count = pair.rpartition("=")
        if not model or not count.strip().isdigit():
            raise typer.BadParameter(f"--rate-limit wants MODEL=N, got {pair!r}")
        limits[model.strip()] = int(count)
    return limits


def _fault_rates(pairs: list[str]) -> dict[str, float]:
    rates = {}
    for pair in pairs:
        kind, sep, rate = pair.partition("=")
        try:
            rates[kind.strip()] = float(rate)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"--fault wants KIND=RATE, got {pair!r}")
    return rates


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to the configured database."""
    from workers.context import session_factory

    session_factory(migrate=True)
    typer.echo("database is at the latest revision")


def demo(
    leads: Annotated[str, typer.Option(help="lead file to run")] = "samples/leads.csv",
    latency_scale: Annotated[float, typer.Option()] = 0.1,
) -> None:
    """Start Redis, the simulator, the sample sites and a worker; run the sample leads; stop."""
    from workers.cli.demo import run_demo

    raise typer.Exit(run_demo(leads=leads, latency_scale=latency_scale))


def batch_poll(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the open provider batches now (beat's ``batch.provider_poll`` does it every 30 s):
    collect the finished ones, flip those whose deadline is near (or that are late) to sync."""
    from workers.batch_tasks import poll_provider_batches_now

    done = poll_provider_batches_now()
    doc = {
        "waiting": done.waiting,
        "delivered": done.delivered,
        "flipped": done.flipped,
        "answers": done.answers,
        "to_sync": done.to_sync,
        "errors": done.errors,
    }
    if as_json:
        typer.echo(json.dumps(doc))
        return
    typer.echo(
        f"provider batches: {len(done.waiting)} waiting, {len(done.delivered)} collected "
        f"({done.answers} answer(s)), {len(done.flipped)} flipped to sync; "
        f"{done.to_sync} request(s) back on the sync path"
        + (f"; {len(done.errors)} poll error(s): {'; '.join(done.errors)}" if done.errors else "")
    )


def sweep(
    older_than: Annotated[int | None, typer.Option(help="idle seconds (default: settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-dispatch leads whose chain was lost (e.g. after a Redis restart without persistence),
    and send stored batches whose dispatch never finished (``enqueue`` while Redis was down)."""
    from workers.lifecycle import sweep_after_s
    from workers.ops import DISPATCH_GRACE_S, dispatch_pending, redispatch_stalled

    batches = dispatch_pending(DISPATCH_GRACE_S if older_than is None else older_than)
    if batches and not as_json:
        typer.echo(f"dispatched {len(batches)} stored batch(es): {', '.join(batches)}")
    stalled = redispatch_stalled(sweep_after_s() if older_than is None else older_than)
    if as_json:
        typer.echo(
            json.dumps([{"lead_id": s.lead_id, "resume_at": s.resume_at.value} for s in stalled])
        )
    else:
        typer.echo(f"re-dispatched {len(stalled)} stalled lead(s)")
