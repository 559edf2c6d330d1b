#!/usr/bin/env bash
# Start (or stop) the PostgreSQL and Redis servers the integration and e2e tests use, on private
# loopback ports, with their data under .leadpipe/services. No Docker, no systemd.
#   scripts/services.sh start|stop|env
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$PWD/.leadpipe/services"
PGPORT="${LEADPIPE_TEST_PGPORT:-55432}"
REDISPORT="${LEADPIPE_TEST_REDISPORT:-56379}"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  mkdir -p "$DIR"
  if ! command -v redis-server >/dev/null; then echo "redis-server not installed" >&2; exit 1; fi
  if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDISPORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  fi
  if [ ! -d "$DIR/pg" ]; then
    mkdir -p "$DIR/pg" && chown -R postgres "$DIR/pg" 2>/dev/null || true
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_pg "$PGBIN/initdb" -D "$DIR/pg" -U postgres -A trust >/dev/null
  fi
  # Another checkout may already serve these ports: reuse it rather than fail.
  if ! pg_isready -q -h 127.0.0.1 -p "$PGPORT" && ! as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w \
      -o "-p $PGPORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
  fi
  for _ in $(seq 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  psql -h 127.0.0.1 -p "$PGPORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='leadpipe_test'" \
    | grep -q 1 || psql -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE leadpipe_test" >/dev/null
  env_
}

stop() {
  [ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
  [ -d "$DIR/pg" ] && as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
}

env_() {
  echo "export LEADPIPE_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/leadpipe_test"
  echo "export LEADPIPE_TEST_REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
