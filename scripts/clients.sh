#!/usr/bin/env bash
# The typed clients in shared/clients, made from docs/openapi.yaml by unmodified generators:
# a Python package (openapi-python-client) and TypeScript types with a thin openapi-fetch
# client (openapi-typescript). The generated code is not committed: the document is the one
# source, and this script makes the code from it.
#
#   scripts/clients.sh generate   # (make clients) write shared/clients/python and
#                                 # shared/clients/typescript/src/schema.d.ts
#   scripts/clients.sh check      # (make clients-test, CI) lint the document (Redocly,
#                                 # Spectral, openapi-spec-validator: no error), generate,
#                                 # tsc --strict, and run both journeys against a live
#                                 # `pulseboard serve` on a throw-away local stack
#
# The generators and linters install outside the clone (Python: scripts/tools.sh
# --client-tools) or into shared/clients/typescript/node_modules (npm ci, from its lock file).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO_DIR"
CLIENTS="$REPO_DIR/shared/clients"
TS="$CLIENTS/typescript"
SPEC="$REPO_DIR/docs/openapi.yaml"

log() { printf 'clients: %s\n' "$*" >&2; }

tools() {
  local env
  env="$(scripts/tools.sh --client-tools)"
  eval "$env"
  if [ ! -x "$TS/node_modules/.bin/openapi-typescript" ] ||
    [ "$TS/package-lock.json" -nt "$TS/node_modules/.package-lock.json" ]; then
    log "npm ci in $TS"
    (cd "$TS" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

generate() {
  log "Python: openapi-python-client -> shared/clients/python"
  "$PULSEBOARD_CLIENT_VENV/bin/openapi-python-client" generate --path "$SPEC" \
    --config "$CLIENTS/python-config.yaml" --output-path "$CLIENTS/python" --overwrite \
    >"$REPO_DIR/target/clients-python.log" 2>&1 || {
    cat "$REPO_DIR/target/clients-python.log" >&2
    exit 1
  }
  log "TypeScript: openapi-typescript -> shared/clients/typescript/src/schema.d.ts"
  (cd "$TS" && node_modules/.bin/openapi-typescript "$SPEC" -o src/schema.d.ts --silent >&2)
}

lint() {
  log "openapi-spec-validator"
  "$PULSEBOARD_CLIENT_VENV/bin/openapi-spec-validator" "$SPEC" >&2
  log "Redocly (recommended)"
  (cd "$TS" && node_modules/.bin/redocly lint --config "$CLIENTS/lint/redocly.yaml" "$SPEC" >&2)
  log "Spectral (spectral:oas)"
  (cd "$TS" && node_modules/.bin/spectral lint --ruleset "$CLIENTS/lint/spectral.yaml" \
    --fail-severity error "$SPEC" >&2)
}

# Every operation is in the Python package (the generator skips one it cannot type, with a
# warning naming it): the only warnings allowed are the CSV bodies it has no type for (the
# JSON body of the same operation is there).
python_complete() {
  local skipped
  skipped="$(grep -E '^WARNING' "$REPO_DIR/target/clients-python.log" | grep -v 'datasources/\{id\}/data' || true)"
  if [ -n "$skipped" ]; then
    log "the Python generator left something out:"
    cat "$REPO_DIR/target/clients-python.log" >&2
    exit 1
  fi
  if grep -q 'Endpoint will not be generated\|Unable to process schema' "$REPO_DIR/target/clients-python.log"; then
    log "the Python generator dropped an operation or a schema:"
    cat "$REPO_DIR/target/clients-python.log" >&2
    exit 1
  fi
}

typecheck() {
  log "tsc --strict: the client"
  (cd "$TS" && node_modules/.bin/tsc -p tsconfig.json --noEmit >&2)
  log "tsc --strict: the journey"
  rm -rf "$REPO_DIR/target/clients/js"
  (cd "$TS" && node_modules/.bin/tsc -p "$CLIENTS/journeys/tsconfig.json" >&2)
}

journeys() {
  if [ -z "${PULSEBOARD_LOCAL_STACK:-}" ]; then
    exec scripts/local-stack.sh "$0" journeys
  fi
  local bin="${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/pulseboard" out="$REPO_DIR/target/clients"
  cargo build -p pulseboard-cli --bin pulseboard >&2
  mkdir -p "$out"
  local boot key port pid
  boot="$("$bin" bootstrap --create-storage --json --company "Journey Co" --email journey@example.com \
    --password 'journey-password-0123' --per-second-limit 1000 --daily-limit 1000000)"
  key="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_key"])' "$boot")"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$bin" serve --port "$port" --tick-seconds 5 >"$out/server.log" 2>&1 &
  pid=$!
  # shellcheck disable=SC2064  # the pid is fixed now
  trap "kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true" EXIT
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { log "server exited"; tail -20 "$out/server.log" >&2; exit 1; }
    sleep 0.1
  done
  export PULSEBOARD_URL="http://127.0.0.1:$port" PULSEBOARD_KEY="$key"
  log "journey in Python (shared/clients/journeys/journey.py)"
  PYTHONPATH="$CLIENTS/python" "$PULSEBOARD_CLIENT_VENV/bin/python" "$CLIENTS/journeys/journey.py" >&2
  log "journey in TypeScript (shared/clients/journeys/journey.ts)"
  NODE_PATH="$TS/node_modules" node "$out/js/journeys/journey.js" >&2
}

case "${1:-check}" in
  generate)
    tools
    mkdir -p "$REPO_DIR/target"
    generate
    ;;
  check)
    tools
    mkdir -p "$REPO_DIR/target"
    lint
    generate
    python_complete
    typecheck
    journeys
    ;;
  journeys)
    tools
    journeys
    ;;
  *)
    echo "usage: scripts/clients.sh [generate|check|journeys]" >&2
    exit 2
    ;;
esac
