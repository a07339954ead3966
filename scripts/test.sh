#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts PostgreSQL if it is
# down (the PostgreSQL half of the store contract suite is required, never
# skipped), installs the Node client-test packages, runs the Rust suites with
# cargo-nextest, checks the TypeScript client (tsc, and that its generated
# types are not stale), installs Debian's chromium when it is missing (the
# ops console's browser tests), then the real-client (npm) suites against the
# built binary, a bounded schemathesis run against /openapi.json, and last
# the cargo-fuzz targets for a few seconds each (when nightly is present).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1
PG_PORT=5432
export EVENTUALL_TEST_POSTGRES_URL="${EVENTUALL_TEST_POSTGRES_URL:-postgres://postgres@${PG_HOST}:${PG_PORT}/postgres}"

pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; }
if ! pg_up; then
  echo "PostgreSQL is down; starting it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! pg_up; then
  echo "FATAL: PostgreSQL is not reachable at $PG_HOST:$PG_PORT; the PostgreSQL suite cannot run" >&2
  exit 1
fi
# Leftovers of interrupted runs (each test creates its own database).
psql "$EVENTUALL_TEST_POSTGRES_URL" -Atq -c \
  "select datname from pg_database where datname like 'eventuall_test_%'" 2>/dev/null |
  while read -r db; do psql "$EVENTUALL_TEST_POSTGRES_URL" -q -c "drop database if exists $db with (force)" >/dev/null 2>&1 || true; done

if ! command -v cargo-nextest >/dev/null; then
  cargo install cargo-nextest --locked
fi

# The archive's S3 test runs against moto's S3-compatible server (PyPI),
# started by the test on 127.0.0.1; pinned, in a venv of its own.
if [ ! -x .venv-moto/bin/moto_server ]; then
  echo "Installing moto (S3-compatible server for the archive tests)"
  python3 -m venv .venv-moto
  .venv-moto/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.1.22'
fi

echo "== Rust suites"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast

# Where cargo put the binaries: CARGO_TARGET_DIR when set (relative to here,
# as cargo reads it), else ./target.
TARGET_DIR="$(realpath "${CARGO_TARGET_DIR:-target}")"

echo "== TypeScript client (clients/ts)"
(
  cd clients/ts
  npm ci --no-audit --no-fund
  npx tsc --noEmit
  # The Node suite imports the compiled client.
  npm run --silent build
)
# The committed types must be what the code generates now.
FRESH="$(mktemp -d)"
EVENTUALL_BIN="$TARGET_DIR/debug/eventuall" scripts/gen-client.sh --out "$FRESH"
if ! diff -u clients/ts/openapi.json "$FRESH/openapi.json" || ! diff -u clients/ts/src/schema.d.ts "$FRESH/schema.d.ts"; then
  echo "FATAL: clients/ts is stale: run scripts/gen-client.sh and commit the result" >&2
  rm -rf "$FRESH"
  exit 1
fi
rm -rf "$FRESH"

# The console's browser tests drive Debian's chromium (playwright-core never
# downloads a browser of its own).
if ! command -v chromium >/dev/null; then
  echo "== Installing chromium (the ops console's browser tests)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

echo "== Real-client suites (Node)"
(
  cd tests/node
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  EVENTUALL_BIN="$TARGET_DIR/debug/eventuall" EVENTUALL_SIM_BIN="$TARGET_DIR/debug/eventuall-sim" \
    node --test --test-concurrency=1 --test-timeout=180000 ./*.test.mjs
  # The same conformance suites with every client spread over three nodes on
  # one PostgreSQL behind a round-robin balancer (issue #20): clients cannot
  # tell which node they reached.
  echo "== Real-client suites over three nodes"
  EVENTUALL_TEST_CLUSTER=3 EVENTUALL_BIN="$TARGET_DIR/debug/eventuall" EVENTUALL_SIM_BIN="$TARGET_DIR/debug/eventuall-sim" \
    node --test --test-concurrency=1 --test-timeout=180000 rooms.test.mjs queue.test.mjs interviews.test.mjs
)

echo "== OpenAPI fuzz (schemathesis)"
EVENTUALL_BIN="$TARGET_DIR/debug/eventuall" scripts/openapi-fuzz.sh

# The cargo-fuzz targets, a bounded time each (the CI profile; the long
# profile is `scripts/fuzz.sh 600`). Their committed inputs already ran on
# stable in tests/fuzz_corpus.rs; this searches for new ones. The fuzzers
# need the nightly toolchain: without one (it cannot be fetched here) the
# search is skipped, loudly.
FUZZ_SECONDS="${EVENTUALL_FUZZ_SECONDS:-10}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  if rustup toolchain list | grep -q '^nightly'; then
    echo "== cargo fuzz (${FUZZ_SECONDS}s per target)"
    scripts/fuzz.sh "$FUZZ_SECONDS"
  else
    echo "WARNING: no nightly toolchain: cargo fuzz skipped (the corpus replay in tests/fuzz_corpus.rs ran)" >&2
  fi
fi
