#!/usr/bin/env python3
"""Golden values for the `domain::analysis` module (src/analysis/mod.rs, `golden` tests).

Re-run:
    pip install scipy statsmodels pymannkendall
    python3 golden/golden.py

Each number printed here is hard-coded in the Rust golden tests. The series are written out
literally below and copied verbatim into the Rust tests.
"""
import math
import warnings

import numpy as np
import pymannkendall as mk
import scipy
import statsmodels
from scipy import stats
from scipy.special import erfc
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing, Holt

warnings.simplefilter("ignore")

# A: trend + noise, 20 points: 100 + 2.5*i + noise, rounded to 0.1 (note the tie 110.3).
TREND = [101.2, 101.7, 107.1, 106.0, 110.3, 110.3, 116.7, 117.9, 119.1, 123.6,
         123.2, 129.9, 129.8, 133.4, 133.7, 139.1, 139.4, 140.5, 146.4, 148.0]
# B: level ~50 with one spike at index 8, 12 points.
SPIKE = [52.0, 48.0, 50.0, 51.0, 49.0, 53.0, 47.0, 50.0, 95.0, 51.0, 49.0, 52.0]
# C: 4 weeks of daily values starting on a Monday: weekdays ~100, Saturday ~40, Sunday ~35.
WEEKLY = [101.0, 98.0, 103.0, 99.0, 102.0, 41.0, 34.0,
          97.0, 102.0, 100.0, 104.0, 98.0, 38.0, 36.0,
          103.0, 99.0, 97.0, 101.0, 100.0, 42.0, 33.0,
          99.0, 101.0, 102.0, 98.0, 103.0, 40.0, 37.0]
# C2: C with the Wednesday of week 3 (index 16) raised to 170.
WEEKLY_SPIKE = list(WEEKLY)
WEEKLY_SPIKE[16] = 170.0
# D: growth with noise, for Holt.
HOLT = [10.0, 12.5, 13.1, 15.8, 16.2, 18.9, 21.4, 21.9, 24.6, 25.3, 28.1, 30.2]
HOLT_ALPHA, HOLT_BETA, HOLT_H = 0.5, 0.3, 5
# E: 60 days from a Monday of daily revenue: 500 + 7 a day, +40 on weekdays, -60 on
# weekends, a fixed wobble ((37 i mod 11) - 5) and one spike (+150 at index 40).
SEASONAL = [500 + 7 * i + (40 if i % 7 < 5 else -60) + ((i * 37) % 11 - 5) + (150 if i == 40 else 0)
            for i in range(60)]
SEASON_M = 7
HW_ALPHA, HW_BETA, HW_GAMMA, HW_H = 0.3, 0.1, 0.2, 10


def p(name, value):
    print(f"{name} = {value!r}")


def robust_z(values):
    med = np.median(values)
    mad = stats.median_abs_deviation(values, scale=1.0)
    return med, mad, [0.6745 * (v - med) / mad for v in values]


def weekday_loo_residuals(values):
    """Residual of each day from the median of the other same-weekday values (>= 3 others)."""
    out = []
    for i, v in enumerate(values):
        others = [values[j] for j in range(len(values)) if j != i and j % 7 == i % 7]
        out.append(v - np.median(others) if len(others) >= 3 else None)
    return out


def holt_known(y, alpha, beta):
    # State l1 = y1, b1 = y2 - y1, expressed as statsmodels' time-0 state.
    model = Holt(np.asarray(y), initialization_method="known",
                 initial_level=2 * y[0] - y[1], initial_trend=y[1] - y[0])
    return model.fit(smoothing_level=alpha, smoothing_trend=beta, optimized=False)


def seasonal_start(y, m):
    """The starting state of domain::analysis::stats::seasonal_start."""
    first, second = np.mean(y[:m]), np.mean(y[m:2 * m])
    trend = (second - first) / m
    level = first - trend * (m + 1) / 2
    return level, trend, [y[i - 1] - (level + i * trend) for i in range(1, m + 1)]


def holt_winters_known(y, m, alpha, beta, gamma):
    level, trend, season = seasonal_start(y, m)
    model = ExponentialSmoothing(np.asarray(y, dtype=float), trend="add", seasonal="add",
                                 seasonal_periods=m, initialization_method="known",
                                 initial_level=level, initial_trend=trend, initial_seasonal=season)
    return model.fit(smoothing_level=alpha, smoothing_trend=beta, smoothing_seasonal=gamma,
                     optimized=False)


def ets_known(y, m, alpha, beta, gamma):
    """The same model as statsmodels' ETS(A,A,A), whose trend smoothing is alpha * beta. Its
    forecasts use the last seasonal state s_n for h = m (ExponentialSmoothing's use s_(n-m)
    there: they differ at h = m, 2m, ...); the Rust code follows ETSModel and the textbook."""
    import pandas as pd
    level, trend, season = seasonal_start(y, m)
    series = pd.Series(np.asarray(y, dtype=float),
                       index=pd.date_range("2026-01-05", periods=len(y), freq="D"))
    model = ETSModel(series, error="add", trend="add", seasonal="add", seasonal_periods=m,
                     initialization_method="known", initial_level=level, initial_trend=trend,
                     initial_seasonal=season)
    with model.fix_params({"smoothing_level": alpha, "smoothing_trend": alpha * beta,
                           "smoothing_seasonal": gamma}):
        return model.fit(disp=False)


def main():
    print(f"# scipy {scipy.__version__}, statsmodels {statsmodels.__version__}")

    print("\n## erfc (scipy.special.erfc) and normal cdf")
    for x in [0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 2.9, 3.0, 3.5, 4.5, 6.0, -0.7]:
        p(f"erfc({x})", float(erfc(x)))
    for x in [-2.0, 1.2816, 1.96, 3.5]:
        p(f"norm.cdf({x})", float(stats.norm.cdf(x)))

    print("\n## A: Theil-Sen and Mann-Kendall (x = 0..n-1)")
    ts = stats.theilslopes(TREND, np.arange(len(TREND)))
    p("theilslopes.slope", float(ts.slope))
    p("theilslopes.intercept", float(ts.intercept))
    r = mk.original_test(TREND)
    p("mk.s", float(r.s))
    p("mk.var_s", float(r.var_s))
    p("mk.z", float(r.z))
    p("mk.p", float(r.p))
    p("mk.Tau", float(r.Tau))
    p("mk.slope (Sen)", float(r.slope))

    print("\n## B: Mann-Kendall (no trend expected) and robust z of the spike")
    r = mk.original_test(SPIKE)
    p("mk.p", float(r.p))
    med, mad, z = robust_z(SPIKE)
    p("median", float(med))
    p("mad", float(mad))
    p("z[8]", float(z[8]))
    p("expected range low", float(med - 3.5 * mad / 0.6745))
    p("expected range high", float(med + 3.5 * mad / 0.6745))
    p("max |z| without the spike", float(max(abs(v) for i, v in enumerate(z) if i != 8)))

    print("\n## C: weekly seasonal, leave-one-out weekday median residuals")
    for name, series in [("C", WEEKLY), ("C2", WEEKLY_SPIKE)]:
        mkr = mk.original_test(series)
        p(f"{name} mk.p", float(mkr.p))
        res = [v for v in weekday_loo_residuals(series) if v is not None]
        med, mad, z = robust_z(res)
        p(f"{name} residual median", float(med))
        p(f"{name} residual mad", float(mad))
        p(f"{name} max |z|", float(max(abs(v) for v in z)))
        i = int(np.argmax([abs(v) for v in z]))
        p(f"{name} argmax |z|", i)
        p(f"{name} z at argmax", float(z[i]))
        others = [series[j] for j in range(len(series)) if j != i and j % 7 == i % 7]
        baseline = float(np.median(others)) + float(med)
        p(f"{name} expected at argmax", baseline)
        p(f"{name} range low", baseline - 3.5 * float(mad) / 0.6745)
        p(f"{name} range high", baseline + 3.5 * float(mad) / 0.6745)

    print(f"\n## D: Holt, fixed alpha={HOLT_ALPHA}, beta={HOLT_BETA}")
    fit = holt_known(HOLT, HOLT_ALPHA, HOLT_BETA)
    p("sse", float(fit.sse))
    p("level", float(fit.level[-1]))
    p("trend", float(fit.trend[-1]))
    p("fittedvalues", [float(v) for v in fit.fittedvalues])
    fc = fit.forecast(HOLT_H)
    p("forecast", [float(v) for v in fc])
    resid = np.asarray(HOLT[1:]) - np.asarray(fit.fittedvalues[1:])
    sigma2 = float(np.sum(resid ** 2) / len(resid))
    var_h = sigma2 * (1 + sum((HOLT_ALPHA * (1 + j * HOLT_BETA)) ** 2 for j in range(1, HOLT_H)))
    p("sigma2", sigma2)
    p(f"80% interval h={HOLT_H}", (float(fc[-1] - 1.2815515655446004 * math.sqrt(var_h)),
                                   float(fc[-1] + 1.2815515655446004 * math.sqrt(var_h))))

    print("\n## D: Holt grid 0.05..0.95 step 0.05, min one-step SSE (statsmodels per point)")
    grid = [k / 20 for k in range(1, 20)]
    best = None
    for a in grid:
        for b in grid:
            sse = holt_known(HOLT, a, b).sse
            if best is None or sse < best[0]:
                best = (sse, a, b)
    p("best (sse, alpha, beta)", (float(best[0]), best[1], best[2]))
    bfit = holt_known(HOLT, best[1], best[2])
    p("best forecast", [float(v) for v in bfit.forecast(3)])

    print(f"\n## E: additive Holt-Winters, m={SEASON_M}, alpha={HW_ALPHA}, beta={HW_BETA}, gamma={HW_GAMMA}")
    p("series", SEASONAL)
    fit = holt_winters_known(SEASONAL, SEASON_M, HW_ALPHA, HW_BETA, HW_GAMMA)
    p("sse", float(fit.sse))
    p("level", float(fit.level[-1]))
    p("trend", float(fit.trend[-1]))
    p("fittedvalues[:3], [-2:]", ([float(v) for v in fit.fittedvalues[:3]],
                                  [float(v) for v in fit.fittedvalues[-2:]]))
    p("ExponentialSmoothing forecast (s_(n-m) at h = m)", [float(v) for v in fit.forecast(HW_H)])
    ets = ets_known(SEASONAL, SEASON_M, HW_ALPHA, HW_BETA, HW_GAMMA)
    p("ETSModel sse", float(np.sum(np.asarray(ets.resid) ** 2)))
    p("ETSModel forecast", [float(v) for v in ets.forecast(HW_H)])
    pred = ets.get_prediction(start=len(SEASONAL), end=len(SEASONAL) + HW_H - 1)
    p("ETSModel forecast variance", [float(v) for v in pred.forecast_variance])
    p(f"ETSModel 80% interval h={HW_H}", np.asarray(pred.pred_int(alpha=0.2))[-1].tolist())

    print("\n## E: Holt-Winters grid 0.05..0.95 step 0.05 for alpha, beta, gamma")
    best = None
    for a in grid:
        for b in grid:
            for g in grid:
                sse = holt_winters_known(SEASONAL, SEASON_M, a, b, g).sse
                if best is None or sse < best[0]:
                    best = (sse, a, b, g)
    p("best (sse, alpha, beta, gamma)", (float(best[0]), best[1], best[2], best[3]))
    bets = ets_known(SEASONAL, SEASON_M, best[1], best[2], best[3])
    p("best ETSModel forecast", [float(v) for v in bets.forecast(HW_H)])


if __name__ == "__main__":
    main()
