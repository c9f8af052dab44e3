#!/usr/bin/env bash
# Package every Lambda of the workspace with cargo-lambda, once for the whole workspace:
#   target/lambda/<function>/bootstrap   (release profile: thin LTO, stripped)
# and print each bootstrap's size.
#
#   scripts/package.sh            # x86_64 (this machine)
#   ARCH=arm64 scripts/package.sh # arm64 (the template's Architecture=arm64), where the Rust target
#                                 # aarch64-unknown-linux-gnu is installed
#
# cargo-lambda comes from the CI venv (scripts/tools.sh --ci-tools) and links with its
# bundled zig, so the binaries run on provided.al2023 whatever this machine's glibc is.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd -P)"
log() { printf 'package: %s\n' "$*" >&2; }

ARCH="${ARCH:-x86_64}"
case "$ARCH" in
  x86_64) TARGET=x86_64-unknown-linux-gnu ;;
  arm64) TARGET=aarch64-unknown-linux-gnu ;;
  *) log "ERROR: ARCH must be x86_64 or arm64, not $ARCH"; exit 2 ;;
esac
if command -v rustup >/dev/null 2>&1 &&
  ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "ERROR: the Rust target $TARGET is not installed (rustup target add $TARGET)"
  exit 1
fi

TOOLS_ENV="$("$SCRIPT_DIR/tools.sh" --ci-tools)"
eval "$TOOLS_ENV"
export PATH="$PULSEBOARD_VENV/bin:$PATH"

# The functions: every package under functions/ (each has one binary, its Lambda).
FUNCTIONS=()
for manifest in "$REPO_DIR"/functions/*/Cargo.toml; do
  FUNCTIONS+=("$(basename "$(dirname "$manifest")")")
done
BIN_ARGS=()
for f in "${FUNCTIONS[@]}"; do BIN_ARGS+=(--bin "$f"); done

cd "$REPO_DIR"
start=$SECONDS
log "cargo lambda build --release --target $TARGET (${FUNCTIONS[*]})"
cargo lambda build --release --target "$TARGET" "${BIN_ARGS[@]}" >&2
log "built in $((SECONDS - start)) s"

LAMBDA_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}/lambda"
printf '%-15s %12s\n' function "bootstrap (bytes)"
status=0
for f in "${FUNCTIONS[@]}"; do
  bootstrap="$LAMBDA_DIR/$f/bootstrap"
  if [ ! -x "$bootstrap" ]; then
    log "ERROR: $bootstrap was not built"
    status=1
    continue
  fi
  printf '%-15s %12s\n' "$f" "$(stat -c %s "$bootstrap")"
done
exit "$status"
