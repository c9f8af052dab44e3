//! The insights engine: from Klip series to a few ranked, plainly worded findings
//! ("Revenue: $12,345 in March 2026, up 8.2% (+$934) from $11,411 in February 2026").
//!
//! Everything here is pure: no I/O, no clock (the caller passes "now"), no randomness. The
//! input types are this crate's own ([`KlipSeries`], [`Point`], [`GroupChange`], [`Window`]);
//! the caller fills them from Klip values.
//!
//! The parts:
//! - [`window`]: analysis windows — calendar presets (`today`, `last_month`, `last_30_days`,
//!   …) in a time zone, and for each the previous period and the same period last year.
//! - [`stats`]: the statistics — median, MAD, Theil–Sen, Mann–Kendall, the normal CDF via an
//!   own `erfc`, Holt's linear smoothing with a grid search.
//! - [`insights`]: the detectors (period over period, trend, anomaly, record, goal, driver,
//!   concentration, forecast), their rules and thresholds, the score and the ranking.
//! - [`text`]: the sentence of each insight, written only from the insight's `values`.
//!
//! The steps of [`analyze`]:
//! 1. Each series is cleaned: non-finite numbers are dropped (a NaN or ±∞ point, group or
//!    total is treated as absent, never as 0), points are sorted and de-duplicated, and
//!    buckets not yet complete at "now" are left out of the statistics.
//! 2. Each detector looks at the series and returns its insights, or none: a detector that
//!    has too few points, or whose test is not significant, says nothing. A flat series yields
//!    nothing at all; Gaussian noise yields an anomaly in about 1 series in 1,000, no forecast,
//!    and a trend at the Mann–Kendall test's 5% level (the tests check both rates).
//! 3. Each insight gets `score = impact × significance` (see [`insights`]); each Klip keeps
//!    its best 3, and the report its best 10 of those.
//!
//! The numbers were checked against scipy, statsmodels and pymannkendall: see the `golden`
//! tests in this file and `golden/golden.py`.

pub mod insights;
pub mod stats;
pub mod text;
pub mod window;

pub use insights::{
    all_insights, analyze, analyze_klip, analyze_klip_with, analyze_with, anomaly_threshold,
    Baseline, Bucket, GroupChange, Insight, InsightType, KlipSeries, Point, Report, Sentiment,
    Settings,
};
pub use stats::{holt, holt_grid, HoltFit};
pub use text::NumberStyle;
pub use window::{Calendar, Shape, Window};

/// Numbers from `golden/golden.py` (scipy 1.17.1, statsmodels 0.15.0, pymannkendall 1.4.3).
///
/// To re-run (from `shared/domain`), then compare with the constants below (the script's
/// last output is kept in `golden/golden.out`; the series are copied verbatim from the
/// script):
///
/// ```text
/// pip install scipy statsmodels pymannkendall
/// python3 golden/golden.py
/// ```
#[cfg(test)]
mod golden {
    use crate::analysis::insights::{
        all_insights, anomaly_threshold, Baseline, Bucket, InsightType, KlipSeries, Point, Settings,
    };
    use crate::analysis::stats::{self, holt, holt_grid, mad, mann_kendall, median, theil_sen};
    use crate::analysis::window::Window;
    use chrono::{DateTime, TimeDelta, Utc};

    const TREND: [f64; 20] = [
        101.2, 101.7, 107.1, 106.0, 110.3, 110.3, 116.7, 117.9, 119.1, 123.6, 123.2, 129.9, 129.8,
        133.4, 133.7, 139.1, 139.4, 140.5, 146.4, 148.0,
    ];
    const SPIKE: [f64; 12] = [
        52.0, 48.0, 50.0, 51.0, 49.0, 53.0, 47.0, 50.0, 95.0, 51.0, 49.0, 52.0,
    ];
    const WEEKLY: [f64; 28] = [
        101.0, 98.0, 103.0, 99.0, 102.0, 41.0, 34.0, //
        97.0, 102.0, 100.0, 104.0, 98.0, 38.0, 36.0, //
        103.0, 99.0, 97.0, 101.0, 100.0, 42.0, 33.0, //
        99.0, 101.0, 102.0, 98.0, 103.0, 40.0, 37.0,
    ];
    const HOLT: [f64; 12] = [
        10.0, 12.5, 13.1, 15.8, 16.2, 18.9, 21.4, 21.9, 24.6, 25.3, 28.1, 30.2,
    ];

    /// `|got − want| ≤ tol · max(|want|, 1e-300)`.
    fn close(got: f64, want: f64, tol: f64, what: &str) {
        let scale = want.abs().max(1e-300);
        assert!(
            (got - want).abs() <= tol * scale,
            "{what}: got {got:e}, want {want:e}"
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    /// Daily or weekly points from a Monday, 2026-01-05 (UTC), analysed well after the end.
    fn series(values: &[f64], bucket: Bucket) -> KlipSeries {
        let first = at("2026-01-05T00:00:00Z");
        let step = if bucket == Bucket::Week { 7 } else { 1 };
        let end = first + TimeDelta::days(step * values.len() as i64);
        let mut s = KlipSeries::new("k", "Metric", bucket, Window::new(first, end, "test"));
        s.points = values
            .iter()
            .enumerate()
            .map(|(i, &value)| Point {
                start: first + TimeDelta::days(step * i as i64),
                value,
            })
            .collect();
        s
    }

    #[test]
    fn erfc_and_normal_cdf_match_scipy() {
        let cases = [
            (0.1, 0.8875370839817152),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028516),
            (1.5, 0.03389485352468927),
            (2.0, 0.004677734981047266),
            (2.5, 0.00040695201744495886),
            (2.9, 4.109787809945884e-05),
            (3.0, 2.2090496998585445e-05),
            (3.5, 7.430983723414129e-07),
            (4.5, 1.9661604415428878e-10),
            (6.0, 2.1519736712498913e-17),
            (-0.7, 1.6778011938374182),
        ];
        for (x, want) in cases {
            // Relative 1e-12 (so absolute far below the required 1e-7).
            close(stats::erfc(x), want, 1e-12, &format!("erfc({x})"));
        }
        let cdf = [
            (-2.0, 0.022750131948179195),
            (1.2816, 0.9000084999023248),
            (1.96, 0.9750021048517795),
            (3.5, 0.9997673709209645),
        ];
        for (x, want) in cdf {
            close(stats::normal_cdf(x), want, 1e-12, &format!("cdf({x})"));
        }
    }

    #[test]
    fn theil_sen_and_mann_kendall_match_scipy_and_pymannkendall() {
        let x: Vec<f64> = (0..TREND.len()).map(|i| i as f64).collect();
        let line = theil_sen(&x, &TREND).expect("line");
        close(line.slope, 2.4873015873015865, 1e-6, "theilslopes.slope");
        close(
            line.intercept,
            99.77063492063493,
            1e-6,
            "theilslopes.intercept",
        );
        let mk = mann_kendall(&TREND).expect("mk");
        assert_eq!(mk.s, 183.0);
        close(mk.var_s, 949.0, 1e-12, "var_s (one tie of 2)");
        close(mk.z, 5.907970005766879, 1e-6, "z");
        close(mk.p_value, 3.4634906054265002e-09, 1e-6, "p");
        close(mk.tau, 0.9631578947368421, 1e-12, "tau");
        let spike = mann_kendall(&SPIKE).expect("mk");
        close(spike.p_value, 0.6279695416437463, 1e-6, "spike p");
        let weekly = mann_kendall(&WEEKLY).expect("mk");
        close(weekly.p_value, 0.4751814387563815, 1e-6, "weekly p");
    }

    #[test]
    fn the_planted_trend_is_reported_with_scipys_slope() {
        let s = series(&TREND, Bucket::Day);
        let all = all_insights(&s, at("2026-06-01T00:00:00Z"), &Settings::default());
        let trend = all
            .iter()
            .find(|i| i.kind == InsightType::Trend)
            .expect("trend");
        let v = |k: &str| trend.values[k].as_f64().expect(k);
        close(v("slope"), 2.4873015873015865, 1e-6, "slope");
        close(v("p_value"), 3.4634906054265002e-09, 1e-6, "p");
        close(v("kendall_tau"), 0.9631578947368421, 1e-9, "tau");
        close(v("total_change"), 2.4873015873015865 * 19.0, 1e-6, "total");
        assert_eq!(v("n"), 20.0);
    }

    #[test]
    fn the_spike_has_scipys_robust_z_and_range() {
        let m = median(&SPIKE).expect("median");
        let d = mad(&SPIKE).expect("mad");
        assert_eq!((m, d), (50.5, 1.5));
        let s = series(&SPIKE, Bucket::Week);
        // The plain 3.5 rule (golden.py's range); the default raises the cut for 12 points.
        let plain = Settings {
            anomaly_calibrated: false,
            ..Settings::default()
        };
        let all = all_insights(&s, at("2026-06-01T00:00:00Z"), &plain);
        let anomalies: Vec<_> = all
            .iter()
            .filter(|i| i.kind == InsightType::Anomaly)
            .collect();
        assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
        let a = anomalies[0];
        let v = |k: &str| a.values[k].as_f64().expect(k);
        close(v("z"), 20.010166666666667, 1e-9, "z");
        close(v("expected"), 50.5, 1e-12, "expected");
        close(v("low"), 42.71645663454411, 1e-9, "low");
        close(v("high"), 58.28354336545589, 1e-9, "high");
        assert_eq!(a.values["date"], "2026-03-02"); // week 8 after 2026-01-05
        let all = all_insights(&s, at("2026-06-01T00:00:00Z"), &Settings::default());
        let a = all
            .iter()
            .find(|i| i.kind == InsightType::Anomaly)
            .expect("still reported");
        let threshold = anomaly_threshold(12, Baseline::Median, &Settings::default());
        assert_eq!(threshold, 9.95);
        let half = a.values["high"].as_f64().expect("high") - 50.5;
        close(
            half,
            threshold * 1.5 / 0.6745,
            1e-9,
            "calibrated half-width",
        );
    }

    #[test]
    fn the_weekly_season_matches_the_leave_one_out_weekday_check() {
        // golden.py: max |z| 1.68625 at day 10 (expected 99, range 88.62–109.38): no anomaly.
        let s = series(&WEEKLY, Bucket::Day);
        let all = all_insights(&s, at("2026-06-01T00:00:00Z"), &Settings::default());
        assert!(
            all.iter().all(|i| i.kind != InsightType::Anomaly),
            "{all:#?}"
        );
        // C2: Wednesday of week 3 (day 16) at 170: z 22.933, expected 102, range 91.62–112.38.
        let mut spiked = WEEKLY;
        spiked[16] = 170.0;
        let s = series(&spiked, Bucket::Day);
        let plain = Settings {
            anomaly_calibrated: false,
            ..Settings::default()
        };
        let all = all_insights(&s, at("2026-06-01T00:00:00Z"), &plain);
        let anomalies: Vec<_> = all
            .iter()
            .filter(|i| i.kind == InsightType::Anomaly)
            .collect();
        assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
        let v = |k: &str| anomalies[0].values[k].as_f64().expect(k);
        close(v("z"), 22.933, 1e-9, "z");
        close(v("expected"), 102.0, 1e-12, "expected");
        close(v("low"), 91.62194217939214, 1e-9, "low");
        close(v("high"), 112.37805782060786, 1e-9, "high");
        assert_eq!(anomalies[0].values["date"], "2026-01-21");
    }

    #[test]
    fn holt_with_fixed_parameters_matches_statsmodels() {
        let fit = holt(&HOLT, 0.5, 0.3).expect("fit");
        close(fit.sse, 11.244397553047946, 1e-6, "sse");
        close(fit.level, 29.868868479016896, 1e-6, "level");
        close(fit.trend, 1.872319579799424, 1e-6, "trend");
        // statsmodels' fittedvalues[1..] (its [0] is the first value itself).
        let fitted = [
            12.5,
            15.0,
            16.265,
            18.17775,
            19.0374625,
            20.796699374999996,
            23.016812906249996,
            24.2093477359375,
            26.214212990390624,
            27.429513669058593,
            29.53773695803379,
        ];
        assert_eq!(fit.fitted.len(), fitted.len());
        for (got, want) in fit.fitted.iter().zip(fitted) {
            close(*got, want, 1e-6, "fitted");
        }
        let forecast = [
            31.74118805881632,
            33.613507638615744,
            35.48582721841517,
            37.35814679821459,
            39.230466378014015,
        ];
        for (h, want) in forecast.iter().enumerate() {
            close(
                fit.forecast(h + 1),
                *want,
                1e-6,
                &format!("forecast h={}", h + 1),
            );
        }
        close(fit.sigma2(), 1.0222179593679952, 1e-6, "sigma2");
        let (lo, hi) = fit.interval(5, stats::Z_80);
        close(lo, 36.582965707240575, 1e-6, "80% low");
        close(hi, 41.877967048787454, 1e-6, "80% high");
    }

    /// E: 60 days from a Monday: 500 + 7 a day, +40 weekdays, −60 weekends, a wobble, a spike.
    pub(crate) const SEASONAL: [f64; 60] = [
        535.0, 546.0, 557.0, 557.0, 568.0, 479.0, 479.0, 590.0, 601.0, 601.0, 612.0, 612.0, 523.0,
        534.0, 634.0, 645.0, 656.0, 656.0, 667.0, 578.0, 578.0, 689.0, 689.0, 700.0, 711.0, 711.0,
        622.0, 633.0, 733.0, 744.0, 755.0, 755.0, 766.0, 666.0, 677.0, 788.0, 788.0, 799.0, 810.0,
        810.0, 871.0, 732.0, 832.0, 843.0, 843.0, 854.0, 865.0, 765.0, 776.0, 887.0, 887.0, 898.0,
        909.0, 909.0, 820.0, 820.0, 931.0, 942.0, 942.0, 953.0,
    ];

    #[test]
    fn holt_winters_with_fixed_parameters_matches_statsmodels() {
        let fit = stats::holt_winters(&SEASONAL, 7, 0.3, 0.1, 0.2).expect("fit");
        close(fit.sse, 31814.32752743651, 1e-6, "sse");
        close(fit.level, 925.11354264583, 1e-6, "level");
        close(fit.trend, 6.783476190008088, 1e-6, "trend");
        for (got, want) in fit.fitted[..3]
            .iter()
            .zip([535.0, 546.0, 556.9999999999999])
        {
            close(*got, want, 1e-6, "fitted");
        }
        for (got, want) in fit.fitted[58..]
            .iter()
            .zip([943.7508958696017, 951.1982026370513])
        {
            close(*got, want, 1e-6, "fitted");
        }
        let forecast = [
            957.3646929583257,
            885.1757260134029,
            869.4992203535164,
            976.8070294400429,
            983.7877800117838,
            990.8462665528534,
            999.583434648582,
            1004.8490262883821,
            932.6600593434595,
            916.9835536835728,
        ];
        // statsmodels' ETSModel (ExponentialSmoothing agrees up to h = 6; at h = 7 it uses
        // s₅₃ instead of the last seasonal state s₆₀: see golden.py).
        for (h, want) in forecast.iter().enumerate() {
            close(
                fit.forecast(h + 1),
                *want,
                1e-6,
                &format!("forecast h={}", h + 1),
            );
        }
        let variance = [
            530.2387921239416,
            587.9817965862388,
            656.7007440455017,
            737.3500643275532,
            830.8841872582166,
            938.2575426633146,
            1060.4245603686709,
            1327.7179354783495,
            1482.3355672616908,
            1654.6101508227598,
        ];
        for (h, want) in variance.iter().enumerate() {
            close(
                fit.forecast_variance(h + 1),
                *want,
                1e-6,
                &format!("variance h={}", h + 1),
            );
        }
        let (lo, hi) = fit.interval(10, stats::Z_80);
        close(lo, 864.8540094810912, 1e-6, "80% low");
        close(hi, 969.1130978860544, 1e-6, "80% high");
    }

    #[test]
    fn holt_winters_grid_picks_statsmodels_best_grid_point() {
        let fit = stats::holt_winters_grid(&SEASONAL, 7).expect("fit");
        assert_eq!((fit.alpha, fit.beta, fit.gamma), (0.05, 0.05, 0.05));
        close(fit.sse, 23929.971838326826, 1e-6, "best sse");
        let forecast = [
            964.7741744741987,
            881.4858313357951,
            876.7255864397031,
            983.1293296451814,
            992.5767143789674,
            1002.0763828383795,
            1004.9215480734771,
            1014.0233665120053,
            930.7350233736017,
            925.9747784775097,
        ];
        for (h, want) in forecast.iter().enumerate() {
            close(fit.forecast(h + 1), *want, 1e-6, "best forecast");
        }
    }

    #[test]
    fn holt_grid_picks_statsmodels_best_grid_point() {
        let fit = holt_grid(&HOLT).expect("fit");
        assert_eq!((fit.alpha, fit.beta), (0.45, 0.65));
        close(fit.sse, 10.525545212554169, 1e-6, "best sse");
        for (h, want) in [31.866938238299408, 33.90117625414983, 35.93541427000026]
            .iter()
            .enumerate()
        {
            close(fit.forecast(h + 1), *want, 1e-6, "best forecast");
        }
    }
}
