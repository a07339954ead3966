#!/usr/bin/env bash
# The collaborative queue side by side with the reference y-websocket server
# (@y/websocket-server 0.1.1, in memory, `tests/node/bench/queue-reference-server.mjs`):
# one generator, the Rust port of queue-bench.mjs's clients
# (`eventuall-bench queue`), against both servers in turn, a fresh server for
# every run, which of the two goes first alternating by round. One JSON line
# per run goes to OUT; the tables and ratios at the end come from
# `eventuall-bench queue --report OUT`.
#
#   bench/queue-compare.sh [OUT]          # default /tmp/queue-compare-<time>.jsonl
#
# Environment:
#   BIN_DIR      where the release `eventuall` and `eventuall-bench` are
#                (default target/release)
#   ROUNDS       rounds of the ours-and-reference pairs (default 2)
#   SCENARIOS    which of: sustained cost storm history (default all)
#   OURS_PORT    our server's port (default 8787); the reference takes a free one
#   MAX_SECONDS  bound of one generator run (default 600)
#   MODERATORS, UPDATES_EACH, ENTRIES, EDITS, JOINS, COST_SIZES, COST_UPDATES,
#   EVICT_WAIT_MS, LOADGEN_THREADS, AWARENESS …: go to the generator as they
#                are (defaults: queue-bench.mjs's; see bench/src/queue.rs)
#
# Our server runs as queue-bench.mjs starts it: a fresh SQLite file,
# EVENTUALL_AWAY_AFTER=1h, EVENTUALL_EVICT_AFTER=1s (the cold joins) and
# EVENTUALL_MAX_FRAMES_PER_SECOND=1000000 (at the default frame budget a
# moderator sending hundreds of updates at once is closed with 1008, and the
# run would time reconnects). Every server log is kept in <OUT>.logs/ and
# scanned after its run. Every server listens on 127.0.0.1; every run is
# bounded by MAX_SECONDS (and `timeout` 30 s later), every start and stop
# by 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/serve-ours.sh

BIN_DIR="${BIN_DIR:-target/release}"
ROUNDS="${ROUNDS:-2}"
SCENARIOS="${SCENARIOS:-sustained cost storm history}"
OURS_PORT="${OURS_PORT:-8787}"
OUT="${1:-/tmp/queue-compare-$(date -u +%Y%m%dT%H%M%S).jsonl}"
LOGS="${OUT%.jsonl}.logs"
SECRET=queue-compare-secret
export MAX_SECONDS="${MAX_SECONDS:-600}" JWT_SECRET="$SECRET"

[ -x "$BIN_DIR/eventuall" ] && [ -x "$BIN_DIR/eventuall-bench" ] || {
  echo "build first: cargo build --release -p eventuall --bin eventuall && cargo build --release -p eventuall-bench (or set BIN_DIR)" >&2
  exit 1
}
[ -d tests/node/node_modules/@y/websocket-server ] || {
  echo "the reference server needs tests/node/node_modules: cd tests/node && npm ci" >&2
  exit 1
}
case "$ROUNDS" in '' | *[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
mkdir -p "$LOGS"

# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

OURS_DIR=""
OURS_PID=""
start_ours() {
  if curl -fs "http://127.0.0.1:$OURS_PORT/healthz" >/dev/null 2>&1; then
    echo "something already answers on 127.0.0.1:$OURS_PORT; set OURS_PORT" >&2
    exit 1
  fi
  OURS_DIR="$(mktemp -d /tmp/queue-compare-ours.XXXXXX)"
  serve_ours "$OURS_DIR" "sqlite://$OURS_DIR/eventuall.db" \
    EVENTUALL_AWAY_AFTER=1h EVENTUALL_EVICT_AFTER=1s EVENTUALL_MAX_FRAMES_PER_SECOND=1000000
}
# stop_ours NAME: stops it, keeps its log as <OUT>.logs/NAME.log, reports
# what it logged besides the start-up notices of the simulated providers.
stop_ours() {
  stop_pid "$OURS_PID"
  OURS_PID=""
  cp "$OURS_DIR/server.log" "$LOGS/$1.log"
  rm -rf "$OURS_DIR"
  local odd
  odd="$(grep -E ' (ERROR|WARN) |panicked' "$LOGS/$1.log" |
    grep -vE 'no LiveKit key configured|EVENTUALL_MUX_URL is not set|EVENTUALL_LIVEKIT_URL is not set|EVENTUALL_AI_URL is not set' || true)"
  if [ -n "$odd" ]; then
    echo "our server logged $(echo "$odd" | wc -l) errors or warnings ($LOGS/$1.log):" >&2
    echo "$odd" | head -5 >&2
  fi
}

REF_PID=""
REF_HOST=""
# start_reference NAME: its output goes to <OUT>.logs/NAME.log.
start_reference() {
  local log="$LOGS/$1.log"
  node tests/node/bench/queue-reference-server.mjs --port 0 >"$log" 2>&1 &
  REF_PID=$!
  for _ in $(seq 1 100); do
    REF_HOST="$(sed -n 's/^listening //p' "$log" | head -1)"
    [ -n "$REF_HOST" ] && return 0
    kill -0 "$REF_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the reference server did not start; see $log" >&2
  exit 1
}
stop_reference() {
  stop_pid "$REF_PID"
  REF_PID=""
  local odd
  odd="$(grep -v '^listening ' "$LOGS/$1.log" || true)"
  if [ -n "$odd" ]; then
    echo "the reference server printed ($LOGS/$1.log):" >&2
    echo "$odd" | head -5 >&2
  fi
}
trap '[ -n "$OURS_PID" ] && stop_pid "$OURS_PID"; [ -n "$REF_PID" ] && stop_pid "$REF_PID"; true' EXIT

FAILED=0
# run SERVER SCENARIO ROUND: one generator run on a fresh server.
run() {
  local server="$1" scenario="$2" round="$3"
  local name="r$round-$scenario-$server" base pid status
  if [ "$server" = ours ]; then
    start_ours
    base="http://127.0.0.1:$OURS_PORT" pid="$OURS_PID"
  else
    start_reference "$name"
    base="http://$REF_HOST" pid="$REF_PID"
  fi
  sleep 1
  echo "== round $round: $scenario on $server" >&2
  set +e
  # SCENARIOS is this script's list; the generator gets one at a time.
  timeout --kill-after=10 "$((MAX_SECONDS + 30))" \
    env -u SCENARIOS BASE_URL="$base" SERVER_PIDS="$pid" LABEL="$server r$round" ROUND="$round" \
    "$BIN_DIR/eventuall-bench" queue --target "$server" --scenarios "$scenario" | tee -a "$OUT"
  status="${PIPESTATUS[0]}"
  set -e
  if [ "$status" != 0 ]; then
    echo "run failed (exit $status): round $round, $scenario on $server" >&2
    FAILED=$((FAILED + 1))
  fi
  if [ "$server" = ours ]; then stop_ours "$name"; else stop_reference "$name"; fi
}

for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    case "$scenario" in
      sustained | cost | storm | history) ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    if [ $((round % 2)) = 1 ]; then order="ours reference"; else order="reference ours"; fi
    for server in $order; do run "$server" "$scenario" "$round"; done
  done
done
echo >&2
env -u SCENARIOS "$BIN_DIR/eventuall-bench" queue --report "$OUT"
echo "results: $OUT (server logs: $LOGS)" >&2
[ "$FAILED" = 0 ] || { echo "$FAILED runs failed" >&2; exit 1; }
