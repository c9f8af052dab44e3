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
    for op, codes in sorted(docs.items()):
        missing = sorted(codes - seen.get(op, set()))
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
        f"answers from {len(e2e)} test process(es)",
        file=sys.stderr,
    )
    failed = False
    for title, lines in (
        ("documented but never answered (reach it in a test, or remove it)", unreached),
        ("answered but not documented", undocumented),
    ):
        if lines:
            failed = True
            print(f"statuses: {title}:", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
    if unknown:
        print("statuses: (routes only tests mount, not checked:)", file=sys.stderr)
        print("\n".join(unknown), file=sys.stderr)
    if not failed:
        print("statuses: every documented status was answered, and only those", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
