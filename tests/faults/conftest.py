"""Private PostgreSQL, redis-server (AOF) and provider for the fault suite, so restarting them
never disturbs the rest of the test run.

Everything runs with leadpipe's **default** settings except these test-only speedups:
- the simulator answers at 5 % of its realistic latency (``latency_scale=0.05``): a batch takes
  seconds instead of minutes, and the faults are still injected while calls are in flight;
- ``LEADPIPE_METRICS_PORT=0``: two workers on one host would fight over the default port 9808;
- the websites are served locally (``LEADPIPE_WEB__MIRROR_URL``/``ALLOW_HOSTS``): no network.
Heartbeats, leases, retry windows, the visibility timeout and the lost-chain age are the defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.leadgen import site_server, write_leads
from db.enums import CallStatus, LeadStatus
from db.migrate import upgrade
from db.models import Lead, LLMCall
from db.session import make_engine, make_session_factory
from pipeline.campaigns.batches import TERMINAL
from simulator import SimulatorConfig, SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "workers.cli")
PGBIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=None, key=lambda p: p.parent.name)
LEADS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster that a test may stop and start."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/leadpipe"

    def _ctl(self, *args: str) -> None:
        cmd = [str(PGBIN / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=off"
        )
        self._ctl("-l", str(self.data / "pg.log"), "-w", "-o", options, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@dataclass
class RedisServer:
    """A redis-server with an append-only file, restartable in place."""

    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None


class Outage:
    """A TCP front for the provider that can go down: refused connections, live ones cut.

    Stopping the simulator itself would not do: its keep-alive connections keep being served.
    """

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.listener: socket.socket | None = None
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> int:
        """Refuse new connections and cut live ones; returns how many calls could be cut."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, set()
        if listener is not None:
            listener.close()
        for conn in conns:
            conn.close()
        return len(conns) // 2  # a client socket and its upstream socket per call

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Provider:
    """The simulator behind an ``Outage`` front; its counters are what a provider would bill."""

    server: SimulatorServer
    front: Outage

    @classmethod
    def start(cls, **config: float) -> Provider:
        cfg = SimulatorConfig(latency_scale=0.05, seed=11, **config)  # type: ignore[arg-type]
        server = SimulatorServer(host="127.0.0.1", port=0, config=cfg)
        server.start()
        front = Outage(free_port(), int(server.url.split(":")[2].split("/")[0]))
        front.up()
        return cls(server, front)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front.port}/v1"

    def configure(self, **changes: float) -> None:
        import httpx

        base = self.server.url.removesuffix("/v1")
        httpx.post(base + "/_sim/config", json=changes, timeout=10).raise_for_status()

    def paid(self) -> int:
        """Successful answers: what a real provider would bill."""
        import httpx

        base = self.server.url.removesuffix("/v1")
        stats = httpx.get(base + "/_sim/stats", timeout=10).json()
        return int(stats["by_status"].get("200", 0))

    def stop(self) -> None:
        self.front.down()
        self.server.stop()


@dataclass
class FaultStack:
    pg: Postgres
    redis: RedisServer
    provider: Provider
    env: dict[str, str]
    factory: sessionmaker[Session]
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.workdir / "workers.log").open("ab")
        proc = subprocess.Popen(
            [*CLI, "worker", "--loglevel", "WARNING"], env=self.env, stdout=log, stderr=log
        )
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.workers.remove(proc)

    def enqueue(self, count: int = LEADS) -> None:
        path = self.workdir / "leads.csv"
        write_leads(path, count=count, share_enterprise=0.2, seed=count)
        self.cli("enqueue", str(path), "--campaign", "faults")

    def statuses(self) -> Counter[str]:
        with self.factory() as session:
            rows = session.execute(select(Lead.status, func.count()).group_by(Lead.status))
            return Counter({str(s): int(n) for s, n in rows.all()})

    def running_stage(self) -> Counter[str]:
        """Stages currently running (owned by a live task), by name."""
        with self.factory() as session:
            rows = session.execute(
                text("SELECT stage, count(*) FROM stage_results WHERE status='running' GROUP BY 1")
            )
            return Counter({str(s): int(n) for s, n in rows.all()})

    def done(self) -> int:
        try:
            statuses = self.statuses()
        except Exception:  # the database may be the fault under test
            return -1
        return sum(n for s, n in statuses.items() if s in {str(t) for t in TERMINAL})

    def wait_all_done(self, timeout: float) -> float:
        """Seconds until every lead is terminal (fails after ``timeout``)."""
        started = time.monotonic()
        while self.done() < LEADS:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out: {self.statuses()} after {timeout:.0f}s")
            time.sleep(1)
        return time.monotonic() - started

    def wait_until(self, what: str, check: object, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not callable(check) or not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def assert_nothing_lost_or_paid_twice(self, in_flight_cut: int = 0) -> dict[str, int]:
        """0 leads lost or failed, one paid answer per journal key, provider 200s = ledger.

        ``in_flight_cut``: calls a kill -9 or a cut connection may have lost between the
        provider's answer and the journal write (at most the killed threads or cut connections).
        The provider billed them and the retried stage called again: README's "remaining
        window", reported in the table, never hidden.
        """
        statuses = self.statuses()
        assert sum(statuses.values()) == LEADS, statuses
        assert statuses.get(LeadStatus.FAILED.value, 0) == 0, statuses
        assert set(statuses) <= {str(t) for t in TERMINAL}, statuses
        with self.factory() as session:
            paid_twice = session.execute(
                select(LLMCall.journal_key)
                .where(LLMCall.status == CallStatus.OK, LLMCall.cache_hit.is_(False))
                .group_by(LLMCall.journal_key)
                .having(func.count() > 1)
            ).all()
            ledger_paid = session.scalar(
                select(func.count())
                .select_from(LLMCall)
                .where(LLMCall.cache_hit.is_(False), LLMCall.prompt_tokens > 0)
            )
        assert paid_twice == []
        # Item 6: no reservation outlives its task, a killed one's included (no 15-min leak).
        leaked = redis.Redis.from_url(self.redis.url).hlen("leadpipe:budget:resv")
        assert leaked == 0, f"{leaked} budget reservations still open"
        unrecorded = self.provider.paid() - int(ledger_paid or 0)
        assert 0 <= unrecorded <= in_flight_cut, (self.provider.paid(), ledger_paid)
        return {
            "leads": sum(statuses.values()),
            "paid": int(ledger_paid or 0),
            "unrecorded": unrecorded,
        }


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    if PGBIN is None:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql")
    data = Path(tempfile.mkdtemp(prefix="leadpipe-faults-pg-"))
    shutil.chown(data, "postgres") if os.getuid() == 0 else None
    cmd = [str(PGBIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    subprocess.run(_as_postgres(cmd), check=True, capture_output=True, timeout=120)
    pg = Postgres(data, free_port())
    pg.start()
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg.port),
            "-U",
            "postgres",
            "-c",
            "CREATE DATABASE leadpipe",
        ],
        check=True,
        capture_output=True,
    )
    yield pg
    pg.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def fault_stack(pg_cluster: Postgres, tmp_path: Path) -> Iterator[FaultStack]:
    engine: Engine = make_engine(pg_cluster.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(pg_cluster.url)
    (tmp_path / "redis").mkdir()
    rds = RedisServer(tmp_path / "redis", free_port())
    rds.start()
    provider = Provider.start()
    sites = site_server()
    threading.Thread(target=sites.serve_forever, daemon=True).start()
    site = f"127.0.0.1:{sites.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    env.update(
        {
            "LEADPIPE_DATABASE_URL": pg_cluster.url,
            "LEADPIPE_REDIS_URL": rds.url,
            "LEADPIPE_SIMULATOR_URL": provider.url,
            "LEADPIPE_WEB__MIRROR_URL": f"http://{site}",
            "LEADPIPE_WEB__ALLOW_HOSTS": json.dumps([site]),
            "LEADPIPE_DATA_DIR": str(tmp_path),
            "LEADPIPE_METRICS_PORT": "0",
        }
    )
    stack = FaultStack(pg_cluster, rds, provider, env, make_session_factory(engine), tmp_path)
    yield stack
    for proc in stack.workers:
        proc.terminate()
    for proc in stack.workers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    sites.shutdown()
    provider.stop()
    rds.stop()
    engine.dispose()
