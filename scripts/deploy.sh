#!/usr/bin/env bash
# Deploy Pulseboard to an AWS account with SAM, then (when asked) create the first company
# and its admin against the deployed table. `make deploy` and `make deploy-bootstrap` wrap it.
#
#   scripts/deploy.sh                   # check credentials, sam build, sam deploy, print the outputs
#   scripts/deploy.sh --bootstrap       # the same, then create a company (COMPANY, EMAIL, PASSWORD)
#   scripts/deploy.sh --bootstrap-only  # only create a company in the already deployed stack
#   scripts/deploy.sh --guided          # sam deploy --guided (asks for every setting, saves samconfig.toml)
#   scripts/deploy.sh --check           # only check the credentials and region, then stop
#
# Environment:
#   ARCH                 x86_64 (default) or arm64: the functions' instruction set, passed as the
#                        template's Architecture parameter to both `sam build` and `sam deploy`
#                        (arm64 needs `rustup target add aarch64-unknown-linux-gnu`)
#   STACK_NAME           CloudFormation stack (default: samconfig.toml's, else pulseboard)
#   GUIDED=1             the same as --guided
#   AWS_PROFILE, or AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
#                        the credentials (the standard chain: variables, ~/.aws/credentials,
#                        ~/.aws/config profiles including SSO, instance or container roles)
#   AWS_REGION           the region while samconfig.toml names none (else AWS_DEFAULT_REGION,
#                        else the profile's); exported as both variables to everything run here
#   PARAMETER_OVERRIDES  more template parameters, e.g. 'AlarmTopicArn=arn:aws:sns:...'
#   COMPANY, EMAIL, PASSWORD, PLAN, DAILY_LIMIT, PER_SECOND_LIMIT
#                        the company --bootstrap creates (PASSWORD is asked for at a terminal
#                        when unset; PLAN defaults to standard)
#
# Tools: sam and cargo-lambda come from the venv scripts/tools.sh --ci-tools installs into
# $PULSEBOARD_CACHE (default ~/.cache/pulseboard); the AWS CLI is not needed. Every failure
# before sam runs is one line on stderr and a non-zero exit.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd -P)"
log() { printf 'deploy: %s\n' "$*" >&2; }
die() {
  printf 'deploy: ERROR: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

DO_DEPLOY=1
DO_BOOTSTRAP=0
GUIDED="${GUIDED:-0}"
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --bootstrap) DO_BOOTSTRAP=1 ;;
    --bootstrap-only) DO_BOOTSTRAP=1 DO_DEPLOY=0 ;;
    --guided) GUIDED=1 ;;
    --check) CHECK_ONLY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $arg" ;;
  esac
done

# ---- what was asked for, checked before anything slow ------------------------------------
ARCH="${ARCH:-x86_64}"
case "$ARCH" in
  x86_64) RUST_TARGET=x86_64-unknown-linux-gnu ;;
  arm64) RUST_TARGET=aarch64-unknown-linux-gnu ;;
  *) die "ARCH must be x86_64 or arm64, not '$ARCH'" ;;
esac
PLAN="${PLAN:-standard}"
if [ "$DO_BOOTSTRAP" -eq 1 ] && [ "$CHECK_ONLY" -eq 0 ]; then
  [ -n "${COMPANY:-}" ] || die "bootstrap needs COMPANY, EMAIL and PASSWORD, e.g. make deploy-bootstrap COMPANY='Acme' EMAIL=ops@acme.example"
  [ -n "${EMAIL:-}" ] || die "bootstrap needs EMAIL (the first admin's login)"
  if [ -z "${PASSWORD:-}" ]; then
    [ -t 0 ] || die "bootstrap needs PASSWORD (at least 10 characters, not the email) when not run at a terminal"
    read -rsp "Password for $EMAIL (at least 10 characters): " PASSWORD && echo >&2
    read -rsp "Once more: " again && echo >&2
    [ "$PASSWORD" = "$again" ] || die "the two passwords differ"
  fi
  [ "${#PASSWORD}" -ge 10 ] || die "PASSWORD must be at least 10 characters"
fi
if [ "$GUIDED" = 1 ] && [ "$DO_DEPLOY" -eq 1 ] && [ "$CHECK_ONLY" -eq 0 ]; then
  [ -t 0 ] || die "--guided (GUIDED=1) asks questions: run it at a terminal"
fi
if [ "$CHECK_ONLY" -eq 0 ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust with rustup: https://rustup.rs)"
fi

# ---- tools: sam, cargo-lambda (and boto3, which sam brings) -------------------------------
log "tools: scripts/tools.sh --ci-tools (the first run installs sam and cargo-lambda into ${PULSEBOARD_CACHE:-~/.cache/pulseboard}/venv)"
TOOLS_ENV="$("$SCRIPT_DIR/tools.sh" --ci-tools)" || die "scripts/tools.sh --ci-tools failed (see its messages above)"
eval "$TOOLS_ENV"
export PATH="$PULSEBOARD_VENV/bin:$PATH"
PY="$PULSEBOARD_VENV/bin/python"
[ -x "$PULSEBOARD_VENV/bin/sam" ] || die "sam is missing from $PULSEBOARD_VENV (delete that directory and run make tools)"
export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
cd "$REPO_DIR"

# Small helpers in the venv's Python: samconfig.toml, the credential chain (boto3's, the
# same one sam uses), the stack outputs and bootstrap's answer.
py() { "$PY" -c "$HELPERS" "$@"; }
HELPERS="$(
  cat <<'PYEOF'
import json, os, shlex, sys

def fail(message):
    print("deploy: ERROR: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(1)

def samconfig():
    # stack_name, region, s3_bucket and the Architecture parameter sam deploy --guided saved.
    path = "samconfig.toml"
    if not os.path.exists(path):
        return
    try:
        import tomllib as toml  # Python >= 3.11
    except ImportError:
        import tomlkit as toml  # a dependency of aws-sam-cli
    try:
        with open(path) as f:
            doc = toml.loads(f.read())
    except Exception as e:
        fail(f"cannot read samconfig.toml: {e}")
    default = doc.get("default", {})
    params = dict(default.get("global", {}).get("parameters", {}))
    params.update(default.get("deploy", {}).get("parameters", {}))
    overrides = params.get("parameter_overrides", "")
    arch = ""
    if isinstance(overrides, dict):  # how --save-params writes them
        arch = str(overrides.get("Architecture", ""))
    else:  # how --guided writes them: one string, or a list of Key="value" words
        if isinstance(overrides, list):
            overrides = " ".join(str(o) for o in overrides)
        for word in shlex.split(str(overrides)):
            if word.startswith("Architecture="):
                arch = word.split("=", 1)[1]
    for key, value in (("stack_name", params.get("stack_name", "")),
                       ("region", params.get("region", "")),
                       ("s3_bucket", params.get("s3_bucket", "")),
                       ("architecture", arch)):
        print(f"{key}={value}")

def session(region):
    try:
        import boto3, botocore.exceptions
    except ImportError:
        fail("boto3 is missing from the tools venv; delete $PULSEBOARD_VENV and run make tools")
    try:
        return boto3.Session(region_name=region or None)
    except botocore.exceptions.ProfileNotFound as e:
        fail(f"{e} (AWS_PROFILE names a profile that is in neither ~/.aws/config nor ~/.aws/credentials)")
    except Exception as e:
        fail(f"AWS configuration: {e}")

def profile_region():
    print(session("").region_name or "")

def credentials(region, mode):
    import botocore.exceptions
    s = session(region)
    try:
        creds = s.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception as e:
        fail(f"AWS credentials could not be loaded: {e}")
    if frozen is None or not frozen.access_key:
        fail("no AWS credentials found: set AWS_PROFILE=<profile> (aws configure / aws sso login), "
             "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); see README, Deploying")
    if mode == "export":
        # For the pulseboard binary: its AWS SDK is built without the SSO and credential_process
        # providers, so it gets the credentials this chain resolved, as variables.
        print(f"export AWS_ACCESS_KEY_ID={shlex.quote(frozen.access_key)}")
        print(f"export AWS_SECRET_ACCESS_KEY={shlex.quote(frozen.secret_key)}")
        if frozen.token:
            print(f"export AWS_SESSION_TOKEN={shlex.quote(frozen.token)}")
        else:
            print("unset AWS_SESSION_TOKEN")
        return
    from botocore.config import Config
    try:
        sts = s.client("sts", config=Config(connect_timeout=5, read_timeout=10,
                                            retries={"max_attempts": 2}))
        who = sts.get_caller_identity()
    except botocore.exceptions.ClientError as e:
        fail("AWS rejected the credentials (%s): %s" % (s.profile_name or "environment variables", e))
    except Exception as e:
        fail(f"cannot verify the AWS credentials with STS in {region}: {e}")
    print(f"account {who['Account']} as {who['Arn']}")

def outputs():
    text = sys.stdin.read()
    start = text.find("[")
    try:
        rows = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        rows = None
    if not isinstance(rows, list):
        fail("sam list stack-outputs gave no JSON list")
    for row in rows:
        print("%s=%s" % (row.get("OutputKey", ""), row.get("OutputValue", "")))

def bootstrapped():
    text = sys.stdin.read()
    try:
        made = json.loads(text[text.find("{"):])
    except ValueError:
        fail("pulseboard bootstrap gave no JSON: " + text)
    for key in ("company_id", "user_id", "email", "api_key"):
        print("%s=%s" % (key, made.get(key, "")))

command, args = sys.argv[1], sys.argv[2:]
{"samconfig": samconfig, "profile-region": profile_region, "credentials": credentials,
 "outputs": outputs, "bootstrapped": bootstrapped}[command](*args)
PYEOF
)"

# read_pairs PREFIX < key=value lines: sets PREFIX_key=value for each line.
read_pairs() {
  local prefix="$1" key value
  while IFS='=' read -r key value; do
    if [ -n "$key" ]; then printf -v "${prefix}_${key}" '%s' "$value"; fi
  done
}

SAMCONFIG_stack_name="" SAMCONFIG_region="" SAMCONFIG_s3_bucket="" SAMCONFIG_architecture=""
load_samconfig() {
  local pairs
  pairs="$(py samconfig)" || exit 1
  read_pairs SAMCONFIG <<<"$pairs"
}
load_samconfig

# ---- credentials and region -------------------------------------------------------------
# The region the stack was deployed to (samconfig.toml, as sam itself does), else the
# environment's, else the profile's. botocore (sam) reads AWS_DEFAULT_REGION and the
# profile, the Rust SDK (pulseboard) AWS_REGION first: one resolved region, exported as
# both, keeps them on the same stack.
REGION="${SAMCONFIG_region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"
if [ -z "$REGION" ]; then
  REGION="$(py profile-region)" || exit 1
fi
[ -n "$REGION" ] || die "no AWS region: set AWS_REGION (e.g. export AWS_REGION=eu-west-1) or a region in your profile's section of ~/.aws/config"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
STACK_NAME="${STACK_NAME:-${SAMCONFIG_stack_name:-pulseboard}}"
IDENTITY="$(py credentials "$REGION" verify)" || exit 1
log "AWS $IDENTITY, region $REGION, stack $STACK_NAME"
[ "$CHECK_ONLY" -eq 1 ] && exit 0

# ---- build and deploy -------------------------------------------------------------------
if [ "$DO_DEPLOY" -eq 1 ]; then
  if command -v rustup >/dev/null 2>&1 && TARGETS="$(rustup target list --installed 2>/dev/null)" &&
    ! grep -qx "$RUST_TARGET" <<<"$TARGETS"; then
    die "ARCH=$ARCH needs the Rust target $RUST_TARGET: rustup target add $RUST_TARGET"
  fi
  read -ra EXTRA_PARAMS <<<"${PARAMETER_OVERRIDES:-}"
  PARAMS=("Architecture=$ARCH" "${EXTRA_PARAMS[@]}")

  # cargo-lambda builds each function of template.yaml for $ARCH (it finds `make package`'s
  # build fresh when that ran for the same ARCH); SAM expects the workspace's own target/.
  log "sam build (Architecture=$ARCH; a first build compiles every function in release mode, several minutes)"
  env -u CARGO_TARGET_DIR sam build --template-file template.yaml \
    --parameter-overrides "${PARAMS[@]}" --build-dir .aws-sam/build

  DEPLOY_ARGS=(--template-file .aws-sam/build/template.yaml --stack-name "$STACK_NAME"
    --region "$REGION" --capabilities CAPABILITY_IAM --parameter-overrides "${PARAMS[@]}"
    --no-fail-on-empty-changeset)
  # Not guided by default: --guided asks "<Function> has no authentication. Is this okay?"
  # once per HttpApi event (31 times), and its default answer, N, stops the deploy.
  if [ "$GUIDED" = 1 ]; then
    log "sam deploy --guided: press Enter to keep each default (Architecture must stay $ARCH);"
    log "  answer y to each '<Function> has no authentication. Is this okay?' (31 of them: every"
    log "  function checks the credentials of each request itself); save the arguments to samconfig.toml"
    sam deploy --guided "${DEPLOY_ARGS[@]}"
    load_samconfig
    if [ -n "$SAMCONFIG_stack_name" ] && [ "$SAMCONFIG_stack_name" != "$STACK_NAME" ]; then
      STACK_NAME="$SAMCONFIG_stack_name"
    fi
    if [ -n "$SAMCONFIG_region" ] && [ "$SAMCONFIG_region" != "$REGION" ]; then
      REGION="$SAMCONFIG_region"
      export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
    fi
    if [ -n "$SAMCONFIG_architecture" ] && [ "$SAMCONFIG_architecture" != "$ARCH" ]; then
      die "the functions were built for $ARCH but Architecture=$SAMCONFIG_architecture was deployed: run make deploy ARCH=$SAMCONFIG_architecture"
    fi
  else
    [ -z "$SAMCONFIG_s3_bucket" ] && DEPLOY_ARGS+=(--resolve-s3)
    log "sam deploy --stack-name $STACK_NAME --region $REGION (Architecture=$ARCH)"
    sam deploy "${DEPLOY_ARGS[@]}"
  fi
fi

# ---- the stack's outputs ----------------------------------------------------------------
OUTPUTS_JSON="$(sam list stack-outputs --stack-name "$STACK_NAME" --region "$REGION" --output json)" ||
  die "cannot read the outputs of stack $STACK_NAME in $REGION (deployed? run make deploy first)"
OUT_ApiUrl="" OUT_TableName="" OUT_BucketName="" OUT_JwtSecretArn="" OUT_WorkerFailureQueueUrl=""
PAIRS="$(py outputs <<<"$OUTPUTS_JSON")" || exit 1
read_pairs OUT <<<"$PAIRS"
[ -n "$OUT_ApiUrl" ] && [ -n "$OUT_TableName" ] && [ -n "$OUT_BucketName" ] ||
  die "stack $STACK_NAME in $REGION has no ApiUrl/TableName/BucketName outputs (is it Pulseboard's?)"
cat <<EOF
stack $STACK_NAME ($REGION)
  API URL        $OUT_ApiUrl
  table          $OUT_TableName
  bucket         $OUT_BucketName
  JWT secret     $OUT_JwtSecretArn
  failure queue  $OUT_WorkerFailureQueueUrl
EOF

if [ "$DO_BOOTSTRAP" -eq 0 ]; then
  cat <<EOF

Next: create the first company and its admin (once; it is refused if the email is taken):
  make deploy-bootstrap COMPANY='Your company' EMAIL=you@example.com
EOF
  exit 0
fi

# ---- the first company ------------------------------------------------------------------
log "building the pulseboard CLI (cargo build --release; the first build takes minutes)"
cargo build --release -p pulseboard-cli --bin pulseboard
CREDENTIALS="$(py credentials "$REGION" export)" || exit 1
BOOTSTRAP_ARGS=(--company "$COMPANY" --email "$EMAIL" --password "$PASSWORD" --plan "$PLAN" --json)
[ -n "${DAILY_LIMIT:-}" ] && BOOTSTRAP_ARGS+=(--daily-limit "$DAILY_LIMIT")
[ -n "${PER_SECOND_LIMIT:-}" ] && BOOTSTRAP_ARGS+=(--per-second-limit "$PER_SECOND_LIMIT")
log "pulseboard bootstrap against table $OUT_TableName"
# No local endpoints, the deployed table and bucket, the resolved credentials and region.
# The JWT secret is not used: bootstrap signs no token (the admin's password is stored as an
# Argon2 hash, the API key as SHA-256), so a throw-away value only keeps the development
# secret's warning away.
MADE="$(
  eval "$CREDENTIALS"
  env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB -u AWS_ENDPOINT_URL_S3 \
    -u AWS_ENDPOINT_URL_DYNAMODB_STREAMS -u PULSEBOARD_LOCAL_STACK -u AWS_PROFILE \
    -u JWT_SECRET_ARN -u JWT_SECRET_PREVIOUS \
    TABLE_NAME="$OUT_TableName" BUCKET_NAME="$OUT_BucketName" RUST_LOG="${RUST_LOG:-warn}" \
    JWT_SECRET="bootstrap-signs-no-token-$RANDOM$RANDOM$RANDOM" \
    cargo run --quiet --release -p pulseboard-cli --bin pulseboard -- bootstrap "${BOOTSTRAP_ARGS[@]}"
)" || die "pulseboard bootstrap failed (its message is above)"
MADE_company_id="" MADE_email="" MADE_api_key=""
PAIRS="$(py bootstrapped <<<"$MADE")" || exit 1
read_pairs MADE <<<"$PAIRS"

cat <<EOF

company $COMPANY: $MADE_company_id
  admin login: $MADE_email / the password you gave
  API key:     $MADE_api_key   (shown only now; keep it)
  API:         $OUT_ApiUrl

Try it:
  KEY=$MADE_api_key
  API=$OUT_ApiUrl
  curl -s -H "kf-api-key: \$KEY" \$API/profile
  curl -s -X POST \$API/auth/login -H 'content-type: application/json' -d '{"email":"$MADE_email","password":"..."}'
EOF
