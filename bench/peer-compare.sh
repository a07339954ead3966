#!/usr/bin/env bash
# Side by side with the peer (the seed's event room as a PartyServer Durable
# Object on bare workerd, `shared/peers/`): one generator, the Rust port of
# the peer's load.mjs (`eventuall-bench loadgen`), against both servers in
# turn, a fresh server and fresh state for every run. One JSON line per run
# goes to OUT; `node $PEERS/load/compare.mjs` reads it.
#
#   bench/peer-compare.sh [OUT]          # default /tmp/peer-compare-<time>.jsonl
#
# Environment:
#   PEERS      a copy of shared/peers with `npm ci` done in partyserver-event
#              (default /work/peers)
#   BIN_DIR    where the release `eventuall` and `eventuall-bench` are
#              (default target/release)
#   ROUNDS     rounds of the peer-and-ours pairs (default 2)
#   SCENARIOS  which of: hb1500 fanout200 fanout10x50 ceiling (default all)
#   CEILING_RATES  ours alone, heartbeats/s (default "40000 60000")
#   OURS_POSTGRES  a PostgreSQL server URL (postgres://user@host:port): ours
#              runs on a fresh database there instead of a SQLite file
#
# Every server listens on 127.0.0.1; every run is bounded by the generator's
# MAX_SECONDS (300 here).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/serve-ours.sh

PEERS="${PEERS:-/work/peers}"
BIN_DIR="${BIN_DIR:-target/release}"
ROUNDS="${ROUNDS:-2}"
SCENARIOS="${SCENARIOS:-hb1500 fanout200 fanout10x50 ceiling}"
CEILING_RATES="${CEILING_RATES:-40000 60000}"
OUT="${1:-/tmp/peer-compare-$(date -u +%Y%m%dT%H%M%S).jsonl}"
SECRET=peer-compare-secret
PEER_PORT=8788
OURS_PORT=8787
export MAX_SECONDS=300 JWT_SECRET="$SECRET"

[ -x "$BIN_DIR/eventuall" ] && [ -x "$BIN_DIR/eventuall-bench" ] || {
  echo "build first: cargo build --release -p eventuall --bin eventuall && cargo build --release -p eventuall-bench" >&2
  exit 1
}
[ -d "$PEERS/partyserver-event/node_modules" ] || {
  echo "PEERS=$PEERS needs partyserver-event with npm ci done" >&2
  exit 1
}

OURS_DIR=""
OURS_PID=""
OURS_URL=""
start_ours() {
  OURS_DIR="$(mktemp -d /tmp/peer-compare-ours.XXXXXX)"
  if [ -n "${OURS_POSTGRES:-}" ]; then
    OURS_DB="peer_compare_$(basename "$OURS_DIR" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')"
    psql "$OURS_POSTGRES/postgres" -q -c "create database $OURS_DB" >/dev/null
    OURS_URL="$OURS_POSTGRES/$OURS_DB"
  else
    OURS_URL="sqlite://$OURS_DIR/eventuall.db"
  fi
  serve_ours "$OURS_DIR" "$OURS_URL"
}
stop_ours() {
  kill "$OURS_PID" 2>/dev/null || true
  wait "$OURS_PID" 2>/dev/null || true
  if [ -n "${OURS_POSTGRES:-}" ] && [ -n "${OURS_DB:-}" ]; then
    psql "$OURS_POSTGRES/postgres" -q -c "drop database if exists $OURS_DB with (force)" >/dev/null || true
  fi
  rm -rf "$OURS_DIR"
}
start_peer() {
  (cd "$PEERS/partyserver-event" && MODE=workerd JWT_SECRET="$SECRET" ./start.sh "$PEER_PORT" >/dev/null)
  PEER_PID="$(cat "/tmp/partyserver-event-$PEER_PORT/pid")"
}
stop_peer() {
  (cd "$PEERS/partyserver-event" && ./stop.sh "$PEER_PORT" >/dev/null) || true
}
trap '[ -n "$OURS_PID" ] && stop_ours; stop_peer' EXIT

# run SERVER LABEL SCENARIO VAR=VALUE…: one generator run on a fresh server.
run() {
  local server="$1" label="$2" scenario="$3"
  shift 3
  local base pid store=()
  if [ "$server" = peer ]; then
    start_peer
    base="http://127.0.0.1:$PEER_PORT" pid="$PEER_PID"
  else
    start_ours
    base="http://127.0.0.1:$OURS_PORT" pid="$OURS_PID"
    store=(--store-url "$OURS_URL")
  fi
  sleep 1
  echo "== $server $label $*" >&2
  env "$@" BASE_URL="$base" SERVER_PIDS="$pid" LABEL="$server $label" \
    "$BIN_DIR/eventuall-bench" loadgen "$scenario" "${store[@]}" | tee -a "$OUT"
  if [ "$server" = peer ]; then stop_peer; else stop_ours; fi
}

for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    case "$scenario" in
      hb1500)
        for server in peer ours; do
          run "$server" hb1500 heartbeats CLIENTS=2000 ROOMS=10 RATE=1500 DURATION=30
        done ;;
      fanout200)
        for server in peer ours; do run "$server" fanout1x200 fanout ROOMS=1 CLIENTS=200; done ;;
      fanout10x50)
        for server in peer ours; do run "$server" fanout10x50 fanout ROOMS=10 CLIENTS=50; done ;;
      ceiling)
        # Ours alone: the peer collapses above 3,000/s.
        for rate in $CEILING_RATES; do
          run ours "ceiling$rate" heartbeats CLIENTS=2000 ROOMS=20 RATE="$rate" DURATION=30 \
            P99_LIMIT_MS=100 CONNECT_CONCURRENCY=64
        done ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done
echo "results: $OUT" >&2
