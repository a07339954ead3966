# shellcheck shell=bash
# Sourced by scripts that need the built binary running: `serve_throwaway
# SECRET` starts it on 127.0.0.1:0 with a throwaway SQLite database in a
# temporary directory, waits for the address it logs, and sets
#
#   BIN          the binary: $EVENTUALL_BIN, else $CARGO_TARGET_DIR/debug/eventuall
#                (else target/debug/eventuall, relative to the caller's directory)
#   WORK         the temporary directory (database, server.log); removed on exit
#   SERVER_PID   the server's pid; stopped on exit
#   ADDR         host:port it listens on
#
# It installs an EXIT trap that stops the server and removes WORK, so the
# caller must not set an EXIT trap of its own.

serve_cleanup() {
  if [ -n "${SERVER_PID:-}" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}

serve_throwaway() {
  local secret="$1"
  local target_dir
  target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"
  BIN="${EVENTUALL_BIN:-$target_dir/debug/eventuall}"
  [ -x "$BIN" ] || { echo "no binary at $BIN; run cargo build --bins first" >&2; exit 1; }

  WORK="$(mktemp -d)"
  SERVER_PID=""
  trap serve_cleanup EXIT

  EVENTUALL_LISTEN=127.0.0.1:0 \
  EVENTUALL_DATABASE_URL="sqlite://$WORK/events.db" \
  EVENTUALL_JWT_SECRET="$secret" \
  EVENTUALL_LOG=info \
  NO_COLOR=1 \
    "$BIN" serve >/dev/null 2>"$WORK/server.log" &
  SERVER_PID=$!

  ADDR=""
  # Up to 30 s: a debug build on a loaded machine runs its migrations first.
  for _ in $(seq 1 300); do
    ADDR="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -oE 'addr=127\.0\.0\.1:[0-9]+' | head -n1 | cut -d= -f2 || true)"
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$ADDR" ] || { cat "$WORK/server.log" >&2; echo "the server did not start" >&2; exit 1; }
}
