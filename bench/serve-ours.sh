# Sourced by bench/peer-compare.sh and bench/queue-compare.sh: how both start
# our server for a run, so the two comparisons start it alike.
#
# serve_ours DIR DATABASE_URL [VAR=VALUE …]: starts `$BIN_DIR/eventuall serve`
# on 127.0.0.1:$OURS_PORT with EVENTUALL_JWT_SECRET=$SECRET and the variables
# given, its log in DIR/server.log; sets OURS_PID (the server's own pid: `env`
# execs it) and returns once /healthz answers, or exits after 10 s.
serve_ours() {
  local dir="$1" url="$2"
  shift 2
  env EVENTUALL_JWT_SECRET="$SECRET" "$@" "$BIN_DIR/eventuall" serve --listen "127.0.0.1:$OURS_PORT" \
    --database-url "$url" >"$dir/server.log" 2>&1 &
  OURS_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$OURS_PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "our server did not start; see $dir/server.log" >&2
  exit 1
}
