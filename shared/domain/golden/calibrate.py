#!/usr/bin/env python3
"""Calibrates the anomaly thresholds (ANOMALY_Z_MEDIAN, ANOMALY_Z_WEEKDAY and
ANOMALY_Z_WEEKPART in src/analysis/insights.rs).

The robust z-score 0.6745 * (r - median r) / MAD with a fixed cut of 3.5 flags at least one
point in 9-19% of pure Gaussian noise series (n = 8..365; printed below as P(>3.5)): the
MAD of a few points is itself noisy, and many points give many chances. So the engine uses
max(3.5, table(m)), where table(m) is the 99.9th percentile of the largest |z| among the m
residuals of a pure-noise series: about 1 noise series in 1,000 shows an anomaly.

One table per baseline of src/insights.rs:
- median: m independent N(0, 1) values, residuals from their median;
- weekday: n consecutive days of N(0, 1) from a Monday, residual of each day from the median
  of the other same-weekday days, for days with at least 3 others (m = number of such days);
- weekpart: the same with Monday-Friday and Saturday-Sunday as the two groups (used while
  some weekday has fewer than 4 days), m = n.

Re-run (a few minutes):
    pip install numpy
    python3 golden/calibrate.py
"""
import numpy as np

LEVEL = 0.999
MEDIAN_SIZES = list(range(8, 41)) + [50, 60, 75, 90, 120, 180, 250, 365, 500, 730, 1000]
WEEKDAY_DAYS = list(range(24, 43)) + [49, 56, 70, 91, 120, 182, 365, 730]
WEEKPART_DAYS = list(range(14, 43)) + [56, 91, 182, 365]


def robust_max_z(r):
    med = np.median(r, axis=1, keepdims=True)
    mad = np.median(np.abs(r - med), axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.max(np.abs(0.6745 * (r - med) / mad), axis=1)


def loo_median(g):
    """Per row of g (trials x k), the median of the other k - 1 values, for each column."""
    k = g.shape[1]
    order = np.argsort(g, axis=1)
    s = np.take_along_axis(g, order, axis=1)
    rank = np.argsort(order, axis=1)  # rank of each column's value

    def others_at(pos):
        # value at position pos among the others (sorted, one removed)
        return np.where(rank > pos, s[:, [pos]], s[:, [min(pos + 1, k - 1)]])

    m = k - 1
    if m % 2 == 1:
        return others_at((m - 1) // 2)
    return (others_at(m // 2 - 1) + others_at(m // 2)) / 2


def weekday_residuals(x, groups=tuple((d,) for d in range(7))):
    n = x.shape[1]
    cols = []
    for days in groups:
        idx = [i for i in range(n) if i % 7 in days]
        if len(idx) - 1 >= 3:
            g = x[:, idx]
            cols.append(g - loo_median(g))
    return np.concatenate(cols, axis=1) if cols else None


def quantile_of(make, trials, rng):
    out = []
    chunk = 20_000
    for lo in range(0, trials, chunk):
        out.append(make(min(chunk, trials - lo), rng))
    return np.concatenate(out)


def main():
    rng = np.random.default_rng(20260311)
    print("# median baseline: m residuals")
    median_rows = []
    for m in MEDIAN_SIZES:
        trials = 1_000_000 if m <= 40 else 300_000
        z = quantile_of(lambda t, r: robust_max_z(r.normal(size=(t, m))), trials, rng)
        q = float(np.quantile(z, LEVEL))
        median_rows.append((m, q))
        print(f"# m={m:5d}  P(>3.5) = {np.mean(z > 3.5):.3f}  q{LEVEL} = {q:.3f}")
    print("# weekday baseline: n days -> m tested residuals")
    weekday_rows = []
    for n in WEEKDAY_DAYS:
        trials = 1_000_000 if n <= 42 else 300_000
        m = weekday_residuals(np.zeros((1, n))).shape[1]
        z = quantile_of(lambda t, r: robust_max_z(weekday_residuals(r.normal(size=(t, n)))),
                        trials, rng)
        q = float(np.quantile(z, LEVEL))
        weekday_rows.append((m, q))
        print(f"# n={n:4d} m={m:4d}  P(>3.5) = {np.mean(z > 3.5):.3f}  q{LEVEL} = {q:.3f}")
    print("# weekpart baseline (Mon-Fri, Sat-Sun): n days -> m tested residuals")
    weekpart_rows = []
    parts = ((0, 1, 2, 3, 4), (5, 6))
    for n in WEEKPART_DAYS:
        trials = 1_000_000 if n <= 42 else 300_000
        m = weekday_residuals(np.zeros((1, n)), parts).shape[1]
        z = quantile_of(
            lambda t, r: robust_max_z(weekday_residuals(r.normal(size=(t, n)), parts)),
            trials, rng)
        q = float(np.quantile(z, LEVEL))
        weekpart_rows.append((m, q))
        print(f"# n={n:4d} m={m:4d}  P(>3.5) = {np.mean(z > 3.5):.3f}  q{LEVEL} = {q:.3f}")
    for name, rows in [("ANOMALY_Z_MEDIAN", median_rows), ("ANOMALY_Z_WEEKDAY", weekday_rows),
                       ("ANOMALY_Z_WEEKPART", weekpart_rows)]:
        print(f"const {name}: [(f64, f64); {len(rows)}] = [")
        for m, q in rows:
            print(f"    ({m:.1f}, {q:.2f}),")
        print("];")


if __name__ == "__main__":
    main()
