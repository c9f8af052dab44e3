"""Every status docs/openapi.yaml documents is answered, and every status answered is documented.

Reads the statuses answered per operation by the end-to-end suite (`make test` writes
`target/statuses/<pid>.txt`, a line per first answer of a route with a status) and compares
them with the explicit status codes of each operation in docs/openapi.yaml (`default`, the
catch-all for an unexpected 500, is not a promise and is not checked). Only the tests count:
the fuzzer's answers depend on the ids it happens to meet, and a check that passes on one
run and fails on the next would block good changes. Run by `make statuses` after `make
test`; exits 1 naming each gap, 2 when the record is missing.

    python scripts/statuses.py [--target DIR]
"""

import argparse
import glob
import os
import sys

import yaml

METHODS = ("get", "put", "post", "delete", "patch")


# Statuses an operation gives only when another request changes the same item between its
# read and its conditional write: real (so documented), but no fixed sequence of requests
# reaches them, and they are not required of the tests. Each names where it comes from.
RACE_ONLY = {
    # An asset deleted by another request in between (assets::remove).
    ("DELETE", "/dashboards/{id}", "409"),
    ("DELETE", "/klips/{id}", "409"),
    ("DELETE", "/reports/{id}", "409"),
    # A key revoked by another request in between (store::accounts revoke condition).
    ("DELETE", "/api-keys/{id}", "409"),
    # A client account changed in between (store::accounts companies().replace).
    ("PUT", "/clients/{id}", "409"),
    ("PUT", "/clients/{id}/features", "409"),
    ("PUT", "/clients/{id}/properties", "409"),
    ("DELETE", "/clients/{id}/properties", "409"),
    ("PUT", "/clients/{id}/resources", "409"),
    # A user changed in between (users::update_user: "the user changed meanwhile").
    ("POST", "/groups/{id}/members", "409"),
    ("PUT", "/groups/{id}/members/{user_id}", "409"),
    ("DELETE", "/groups/{id}/members/{user_id}", "409"),
    ("DELETE", "/groups/{id}", "409"),
    # An asset saved by another request in between, on routes that take no If-Match
    # (assets::save: "changed since version").
    ("DELETE", "/dashboards/{id}/published-links/{link_id}", "412"),
    ("POST", "/klips/{id}/annotations", "412"),
    ("PUT", "/klips/{id}/annotations/{annotation_id}", "412"),
    ("DELETE", "/klips/{id}/annotations/{annotation_id}", "412"),
    ("POST", "/datasources/{id}/enable", "412"),
    ("POST", "/datasources/{id}/disable", "412"),
}


def documented(spec_path):
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    out = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            codes = {str(c) for c in op.get("responses", {}) if str(c).isdigit()}
            out[(method.upper(), path)] = codes
    return out


def matches(template, path):
    t, p = template.split("/"), path.split("/")
    return len(t) == len(p) and all(
        a == b or (a.startswith("{") and a.endswith("}") and b) for a, b in zip(t, p)
    )


def answered(files, docs):
    """(method, documented path) -> statuses. A line is `route METHOD /declared/path status`
    or `path METHOD /routed/path status` (an answer given before a route took the request:
    it counts for the most specific documented path it matches, and for none when it
    matches none, as for an undeclared route)."""
    out = {}
    for name in files:
        with open(name) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 4:
                    continue
                kind, method, path, status = parts
                if kind == "path":
                    candidates = [
                        p for (m, p) in docs if m == method and matches(p, path)
                    ]
                    if not candidates:
                        continue
                    path = min(candidates, key=lambda p: p.count("{"))
                out.setdefault((method, path), set()).add(status)
    return out


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default=os.environ.get("CARGO_TARGET_DIR") or os.path.join(repo, "target"),
    )
    args = parser.parse_args()
    e2e = sorted(glob.glob(os.path.join(args.target, "statuses", "*.txt")))
    if not e2e:
        print(
            f"statuses: no record of the end-to-end suite under {args.target}/statuses: "
            "run `make test` first",
            file=sys.stderr,
        )
        return 2
    docs = documented(os.path.join(repo, "docs", "openapi.yaml"))
    seen = answered(e2e, docs)

    unreached, undocumented, unknown = [], [], []
    race_only_met, stale = [], []
    for entry in sorted(RACE_ONLY):
        method, path, status = entry
        if status not in docs.get((method, path), set()):
            stale.append(f"  {method} {path}: {status}")
        elif status in seen.get((method, path), set()):
            race_only_met.append(f"  {method} {path}: {status}")
    for op, codes in sorted(docs.items()):
        missing = sorted(
            c for c in codes - seen.get(op, set()) if (op[0], op[1], c) not in RACE_ONLY
        )
        if missing:
            unreached.append(f"  {op[0]} {op[1]}: {', '.join(missing)}")
    for op, codes in sorted(seen.items()):
        if op not in docs:
            # A route only a test mounts (tests::errors); the routes every function
            # declares are all documented (tests::openapi).
            unknown.append(f"  {op[0]} {op[1]}: {', '.join(sorted(codes))}")
            continue
        extra = sorted(codes - docs[op])
        if extra:
            undocumented.append(f"  {op[0]} {op[1]}: {', '.join(extra)}")

    total = sum(len(c) for c in docs.values())
    print(
        f"statuses: {len(docs)} operations, {total} documented statuses; "
        f"{len(RACE_ONLY)} of them only under a race; answers from {len(e2e)} test process(es)",
        file=sys.stderr,
    )
    failed = False
    for title, lines in (
        ("documented but never answered (reach it in a test, or remove it)", unreached),
        ("answered but not documented", undocumented),
        ("in RACE_ONLY but not documented (take it out of the list)", stale),
    ):
        if lines:
            failed = True
            print(f"statuses: {title}:", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
    if race_only_met:
        # Not a failure: a test may meet a race now and then.
        print("statuses: in RACE_ONLY, yet a test answered it:", file=sys.stderr)
        print("\n".join(race_only_met), file=sys.stderr)
    if unknown:
        print("statuses: (routes only tests mount, not checked:)", file=sys.stderr)
        print("\n".join(unknown), file=sys.stderr)
    if not failed:
        print("statuses: every documented status was answered, and only those", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
