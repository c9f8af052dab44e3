#!/usr/bin/env bash
# Fuzz the whole API with schemathesis (PyPI) against a `pulseboard serve` on a throw-away
# local stack, with a bootstrapped company and API key.
#
#   scripts/fuzz.sh                # what CI runs (FUZZ_EXAMPLES=25 per operation)
#   FUZZ_EXAMPLES=200 scripts/fuzz.sh
#   FUZZ_PHASES=examples,coverage,fuzzing scripts/fuzz.sh   # what CI runs (no stateful phase)
#
# Every check schemathesis has runs (no 5xx, status codes, content types, headers and
# bodies all as docs/openapi.yaml says, schema-invalid input refused, schema-valid input
# accepted, ...), configured in docs/schemathesis.toml. Reports (JUnit, the JSON run
# report) go to target/fuzz/. schemathesis itself is installed by scripts/tools.sh
# --fuzz-tools into its own venv, outside the clone.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO_DIR"

if [ -z "${PULSEBOARD_LOCAL_STACK:-}" ]; then
  # Re-run inside a local stack (DynamoDB Local + s3s-fs), which stops it afterwards.
  exec scripts/local-stack.sh "$0" "$@"
fi

log() { printf 'fuzz: %s\n' "$*" >&2; }

TOOLS_ENV="$(scripts/tools.sh --fuzz-tools)"
eval "$TOOLS_ENV"
ST="$PULSEBOARD_FUZZ_VENV/bin/st"

BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/pulseboard"
cargo build -p pulseboard-cli --bin pulseboard >&2

OUT="${CARGO_TARGET_DIR:-$REPO_DIR/target}/fuzz"
rm -rf "$OUT"
mkdir -p "$OUT"

# A company whose limits the fuzzer cannot reach (429s are documented, but a run that
# spends its budget on them tests nothing else).
BOOT="$("$BIN" bootstrap --create-storage --json --company "Fuzz Co" --email fuzz@example.com \
  --password 'fuzz-password-0123' --per-second-limit 100000 --daily-limit 100000000)"
KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_key"])' "$BOOT")"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" serve --port "$PORT" --tick-seconds 5 >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited"; tail -20 "$OUT/server.log" >&2; exit 1; }
  sleep 0.1
done

log "schemathesis against 127.0.0.1:$PORT, ${FUZZ_EXAMPLES:-25} examples per operation"
status=0
# scripts/fuzz_hooks.py: positive_data_acceptance with the contract's stated rules, and a
# report of documented statuses never answered. One worker: hypothesis' source inspection
# is not thread-safe (two workers gave sporadic "Runtime Error"s in schemathesis itself).
# It runs from $OUT, emptied above: schemathesis keeps a crash cache under ./.schemathesis that
# it would replay in the next run, and every run should be the same one.
(cd "$OUT" && FUZZ_OUT="$OUT" PYTHONPATH="$REPO_DIR/scripts" SCHEMATHESIS_HOOKS=fuzz_hooks \
  "$ST" --config-file "$REPO_DIR/docs/schemathesis.toml" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --url "http://127.0.0.1:$PORT/api/v1" \
  --header "X-API-Key: $KEY" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${FUZZ_EXAMPLES:-25}" \
  --seed "${FUZZ_SEED:-1}" \
  --phases "${FUZZ_PHASES:-examples,coverage,fuzzing,stateful}" \
  --workers 1 \
  --report junit,json --report-dir "$OUT") || status=$?

if [ -s "$OUT/unreached-statuses.txt" ]; then
  log "documented statuses no response had ($OUT/unreached-statuses.txt): $(wc -l <"$OUT/unreached-statuses.txt") operations"
fi

# A 5xx the fuzzer saw would be in the server's log too.
if grep -q '"status":5[0-9][0-9]\|status=5[0-9][0-9]' "$OUT/server.log"; then
  log "the server answered 5xx (see $OUT/server.log)"
  status=1
fi
exit "$status"
