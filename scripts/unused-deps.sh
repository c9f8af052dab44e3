#!/usr/bin/env bash
# Lists the dependencies a workspace crate declares and never names in its code (the check
# `cargo machete` makes, without installing it): each `[dependencies]` entry of every
# Cargo.toml under functions/, shared/, cli/ and tests/ must appear as a path (`name::` or
# `use name`) or an attribute (`#[name(`, `name!`) somewhere in that crate's sources.
# Exit status 1 when one does not. Run from anywhere; CI runs it (.ci/run, step deps).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unused=0
for manifest in functions/*/Cargo.toml shared/*/Cargo.toml cli/Cargo.toml tests/Cargo.toml; do
  crate="$(dirname "$manifest")"
  deps="$(sed -n '/^\[dependencies\]/,/^\[/p' "$manifest" | grep -oE '^[A-Za-z0-9_-]+' || true)"
  for dep in $deps; do
    name="${dep//-/_}"
    # A workspace crate renamed in [lib] (pulseboard-domain is `domain`) is named by its
    # lib name: take it from the dependency's own manifest when it is a path in this repo.
    case "$dep" in
      pulseboard-*)
        lib="$(grep -rl "^name = \"$dep\"" --include=Cargo.toml functions shared cli tests 2>/dev/null | head -1)"
        if [ -n "$lib" ]; then
          libname="$(sed -n '/^\[lib\]/,/^\[/p' "$lib" | sed -n 's/^name = "\(.*\)"/\1/p' | head -1)"
          [ -n "$libname" ] && name="$libname"
        fi
        ;;
    esac
    if ! grep -rqE "(\b${name}::|\buse ${name}\b|#\[${name}[(:]|\b${name}!|extern crate ${name}\b)" "$crate" --include=*.rs; then
      echo "$manifest: $dep is declared but never used"
      unused=1
    fi
  done
done
exit "$unused"
