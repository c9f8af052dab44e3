#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup/stop functions are invoked from traps
# Run a command against a throw-away local AWS stack:
#   - DynamoDB Local (in memory),
#   - s3s-fs (a real, signature-checking S3 server; built into the `pulseboard` binary as
#     `pulseboard s3-server`, which this script builds first) on a fresh temp directory, and
#   - aws-ses-v2-local (npm; the SES v2 API in memory: SendEmail, also raw MIME; it wants an
#     `Authorization: AWS...` header but checks no signature; the sent mail is read back
#     as JSON from GET /store, cleared with POST /clear-store, shown on the inbox page /),
# each on a free 127.0.0.1 port. The command gets the environment below; the servers are
# stopped (by PID) and the temp dir removed when it ends, whatever the outcome. Exits with
# the command's status.
#
#   scripts/local-stack.sh cargo test --workspace --all-targets
#   scripts/local-stack.sh bash          # an interactive shell wired to the stack
#
# Exported to CMD:
#   AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SESV2
#   (http://127.0.0.1:<port>), MAIL_FROM=reports@pulseboard.local,
#   AWS_ACCESS_KEY_ID=pulseboard, AWS_SECRET_ACCESS_KEY=pulseboard-local-secret,
#   AWS_REGION=AWS_DEFAULT_REGION=us-east-1, TABLE_NAME=pulseboard, BUCKET_NAME=pulseboard,
#   JWT_SECRET=test-secret-..., PULSEBOARD_LOCAL_STACK=1,
#   PULSEBOARD_WEBHOOK_VERIFY="<venv python> <repo>/tests/receivers/verify_webhooks.py"
#   (Standard Webhooks signatures checked by the `standardwebhooks` package: JSON lines in,
#   a verdict line out each; two words, split on whitespace)
# plus DYNAMODB_LOCAL_DIR, SES_LOCAL_CLI, PULSEBOARD_TEST_VENV, PULSEBOARD_CACHE from
# scripts/tools.sh --test-tools.
# STACK_PROFILE (cargo profile of the `pulseboard` binary that serves S3, default dev; `make
# bench` uses release so that the one release build serves both).
# Nothing is created inside the stack: no table, no bucket (s3s-fs keeps buckets as
# directories under its temp root). STACK_START_TIMEOUT (seconds, default 60) bounds startup.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

log() { printf 'local-stack: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
  echo "usage: scripts/local-stack.sh CMD [ARGS...]" >&2
  exit 2
fi

# (Assign first: `eval "$(cmd)"` would hide a failure of cmd from set -e.)
TOOLS_ENV="$("$SCRIPT_DIR/tools.sh" --test-tools)"
eval "$TOOLS_ENV"

# The S3 server is the workspace's own `pulseboard s3-server`: build it (cargo shares this
# build with the command's own, e.g. `cargo test --workspace`).
PROFILE="${STACK_PROFILE:-dev}"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd -P)"
case "$PROFILE" in
  dev) PROFILE_DIR=debug ;;
  *) PROFILE_DIR="$PROFILE" ;;
esac
log "building the pulseboard binary ($PROFILE) for its S3 server"
(cd "$REPO_DIR" && cargo build --profile "$PROFILE" -p pulseboard-cli --bin pulseboard) >&2
S3_SERVER_BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/$PROFILE_DIR/pulseboard"
[ -x "$S3_SERVER_BIN" ] || { log "ERROR: $S3_SERVER_BIN was not built"; exit 1; }

ACCESS_KEY="pulseboard"
SECRET_KEY="pulseboard-local-secret"
START_TIMEOUT="${STACK_START_TIMEOUT:-60}"

STACK_TMP="$(mktemp -d "${TMPDIR:-/tmp}/pulseboard-stack.XXXXXX")"
DDB_PID=""
S3_PID=""
SES_PID=""

stop_pid() {
  local pid="$1" name="$2"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do # up to 5 s for a clean shutdown
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$DDB_PID" "DynamoDB Local"
  stop_pid "$S3_PID" "s3s-fs"
  stop_pid "$SES_PID" "aws-ses-v2-local"
  rm -rf "$STACK_TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# N (default 2) distinct free ports, chosen by the kernel. (A tiny race with other programs
# remains; a server that fails to bind is retried on new ports below.)
free_ports() {
  python3 - "${1:-2}" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_log() {
  log "---- $1 log ($2) ----"
  tail -n 40 "$2" >&2 || true
  log "---- end of $1 log ----"
}

# -disableTelemetry: otherwise DynamoDB Local sends telemetry and writes
# dynamodb-local-metadata.json into its working directory (run it from the temp dir anyway).
start_dynamodb() {
  (cd "$STACK_TMP" && exec java -Djava.library.path="$DYNAMODB_LOCAL_DIR/DynamoDBLocal_lib" \
    -jar "$DYNAMODB_LOCAL_DIR/DynamoDBLocal.jar" -inMemory -disableTelemetry -port "$1" \
    </dev/null >"$STACK_TMP/dynamodb-local.log" 2>&1) &
  DDB_PID=$!
}

start_s3() {
  mkdir -p "$STACK_TMP/s3"
  "$S3_SERVER_BIN" s3-server --host 127.0.0.1 --port "$1" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --root "$STACK_TMP/s3" \
    </dev/null >"$STACK_TMP/s3s-fs.log" 2>&1 &
  S3_PID=$!
}

# The inbox keeps the mail in memory only; it listens on 127.0.0.1 alone (its default is
# every address).
start_ses() {
  (cd "$STACK_TMP" && exec node "$SES_LOCAL_CLI" --host 127.0.0.1 --port "$1" \
    </dev/null >"$STACK_TMP/aws-ses-v2-local.log" 2>&1) &
  SES_PID=$!
}

# await_server NAME STARTER LOG PIDVAR PORTVAR
# Waits until the started server accepts TCP connections on its port. If it exits before
# listening (e.g. another program grabbed the port in between), restarts it on a new port,
# at most twice. Fails with the server's log on timeout or repeated failure.
await_server() {
  local name="$1" starter="$2" logf="$3" pidvar="$4" portvar="$5" attempt=1
  local deadline=$((SECONDS + START_TIMEOUT)) port
  while :; do
    if port_open "${!portvar}"; then
      return 0
    fi
    if ! kill -0 "${!pidvar}" 2>/dev/null; then
      wait "${!pidvar}" 2>/dev/null || true
      printf -v "$pidvar" '%s' ""
      if [ "$attempt" -ge 3 ]; then
        log "ERROR: $name exited before listening (tried $attempt ports)"
        show_log "$name" "$logf"
        exit 1
      fi
      log "$name exited before listening on port ${!portvar}; retrying on another port"
      show_log "$name" "$logf"
      attempt=$((attempt + 1))
      port="$(free_ports)"
      port="${port%% *}"
      printf -v "$portvar" '%s' "$port"
      "$starter" "$port"
      deadline=$((SECONDS + START_TIMEOUT))
      continue
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "ERROR: $name did not accept connections on 127.0.0.1:${!portvar} within ${START_TIMEOUT}s"
      show_log "$name" "$logf"
      exit 1
    fi
    sleep 0.1
  done
}

# Start all three (they boot in parallel; DynamoDB Local takes ~2 s), then wait for each.
read -r DDB_PORT S3_PORT SES_PORT < <(free_ports 3)
start_dynamodb "$DDB_PORT"
start_s3 "$S3_PORT"
start_ses "$SES_PORT"
await_server "DynamoDB Local" start_dynamodb "$STACK_TMP/dynamodb-local.log" DDB_PID DDB_PORT
await_server "s3s-fs" start_s3 "$STACK_TMP/s3s-fs.log" S3_PID S3_PORT
await_server "aws-ses-v2-local" start_ses "$STACK_TMP/aws-ses-v2-local.log" SES_PID SES_PORT
log "DynamoDB Local on 127.0.0.1:$DDB_PORT (pid $DDB_PID), s3s-fs on 127.0.0.1:$S3_PORT (pid $S3_PID), aws-ses-v2-local on 127.0.0.1:$SES_PORT (pid $SES_PID)"

# Never let a local run reach real AWS with the caller's credentials.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_ENDPOINT_URL \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_CONTAINER_CREDENTIALS_FULL_URI
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DDB_PORT"
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT"
export AWS_ENDPOINT_URL_SESV2="http://127.0.0.1:$SES_PORT"
export MAIL_FROM="reports@pulseboard.local"
export AWS_ACCESS_KEY_ID="$ACCESS_KEY"
export AWS_SECRET_ACCESS_KEY="$SECRET_KEY"
export AWS_REGION="us-east-1"
export AWS_DEFAULT_REGION="us-east-1"
export AWS_EC2_METADATA_DISABLED="true"
export TABLE_NAME="pulseboard"
export BUCKET_NAME="pulseboard"
export JWT_SECRET="test-secret-pulseboard-local-stack-0123456789abcdef"
export PULSEBOARD_LOCAL_STACK=1
export PULSEBOARD_WEBHOOK_VERIFY="$PULSEBOARD_TEST_VENV/bin/python $REPO_DIR/tests/receivers/verify_webhooks.py"

# Run CMD; the EXIT trap stops the servers afterwards and passes CMD's status on.
# - On a terminal CMD runs in the foreground, so interactive use and Ctrl-C behave normally.
# - Otherwise (CI, pipes) CMD runs as a background job that we `wait` for, so a SIGTERM or
#   SIGINT sent to this script alone is handled at once: it is passed on to CMD as SIGTERM
#   and the servers are stopped. (A foreground child would delay the trap until it exits.)
if [ -t 0 ]; then
  set +e
  "$@"
  status=$?
  set -e
  exit "$status"
fi

CMD_PID=""
forward() {
  if [ -n "$CMD_PID" ]; then
    kill -TERM "$CMD_PID" 2>/dev/null || true
    wait "$CMD_PID" 2>/dev/null || true
  fi
  exit "$1"
}
trap 'forward 130' INT
trap 'forward 143' TERM
"$@" <&0 &
CMD_PID=$!
status=0
wait "$CMD_PID" || status=$?
CMD_PID=""
exit "$status"
