#!/usr/bin/env bash
# Regenerates the TypeScript client's types from the code: starts the built
# binary on 127.0.0.1:0 with a throwaway SQLite database, fetches
# /openapi.json, and runs openapi-typescript on it.
#
#   scripts/gen-client.sh             # writes clients/ts/openapi.json and clients/ts/src/schema.d.ts
#   scripts/gen-client.sh --out DIR   # writes DIR/openapi.json and DIR/schema.d.ts (the staleness check)
#
# The binary is $EVENTUALL_BIN, else $CARGO_TARGET_DIR/debug/eventuall (else
# target/debug/eventuall); build it first (`cargo build --bins`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CLIENT="$ROOT/clients/ts"

JSON_OUT="$CLIENT/openapi.json"
TYPES_OUT="$CLIENT/src/schema.d.ts"
if [ "${1:-}" = "--out" ]; then
  mkdir -p "$2"
  OUT="$(realpath "$2")"
  JSON_OUT="$OUT/openapi.json"
  TYPES_OUT="$OUT/schema.d.ts"
fi

# shellcheck source=lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"
serve_throwaway gen-client-secret

curl -fsS "http://$ADDR/openapi.json" -o "$WORK/openapi.raw.json"
# Pretty-printed, so that changes read well in diffs.
node -e 'const fs = require("fs"); const [src, dst] = process.argv.slice(1);
  fs.writeFileSync(dst, JSON.stringify(JSON.parse(fs.readFileSync(src, "utf8")), null, 2) + "\n");' \
  "$WORK/openapi.raw.json" "$JSON_OUT"

if [ ! -x "$CLIENT/node_modules/.bin/openapi-typescript" ]; then
  (cd "$CLIENT" && npm ci --no-audit --no-fund >/dev/null)
fi
"$CLIENT/node_modules/.bin/openapi-typescript" "$JSON_OUT" --output "$TYPES_OUT" >/dev/null
echo "wrote $JSON_OUT and $TYPES_OUT"
