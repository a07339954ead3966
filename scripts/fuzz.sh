#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for a bounded time each (issue #22).
#   scripts/fuzz.sh [seconds-per-target]   (default 30; the long profile: 600)
# Needs the nightly toolchain; installs cargo-fuzz (crates.io) when missing. The committed
# seeds (fuzz/seeds/<target>) start each run; what the fuzzer adds goes to
# fuzz/corpus/<target> (not committed). A crash stops the run: copy its
# input from fuzz/artifacts/<target>/ into fuzz/regressions/<target>/ and
# fix it; tests/fuzz_corpus.rs then replays it on stable in every run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

TARGETS=$(cd fuzz && cargo +nightly fuzz list)
# Address sanitizer off: the code under test is safe Rust, and without it
# the build is lighter and each run several times faster.
cargo +nightly fuzz build --sanitizer none
for target in $TARGETS; do
  mkdir -p "fuzz/corpus/$target"
  echo "== fuzz $target (${SECONDS_PER_TARGET}s)"
  cargo +nightly fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+== ERROR|.*panicked|SUMMARY|artifact_prefix|Test unit written)' || true
  # grep hides the fuzzer's exit status: a crash leaves an artifact.
  if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
    echo "FATAL: fuzz target $target found a failing input:" fuzz/artifacts/"$target"/* >&2
    exit 1
  fi
done
