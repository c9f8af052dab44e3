//! The statistics behind the insights, as small pure functions over `f64` slices.
//!
//! Every function expects finite numbers: [`crate::analysis::insights`] drops NaN and ±∞ before it calls
//! anything here (see the crate docs), so these functions do not check again. Empty or too
//! short inputs give `None` rather than a made-up number.
//!
//! - [`median`], [`mad`], [`mean_abs_dev`]: the robust centre and spreads used by the anomaly
//!   z-score (`0.6745 · (x − median) / MAD`, Iglewicz & Hoaglin).
//! - [`theil_sen`]: the median of all pairwise slopes `(yⱼ − yᵢ) / (xⱼ − xᵢ)` (pairs with equal
//!   `x` are skipped) and the intercept `median(y) − slope · median(x)`, as
//!   `scipy.stats.theilslopes` computes them. Exact over every pair up to
//!   [`THEIL_SEN_EXACT_POINTS`] points (O(n²) pairs); above, the median of the slopes of
//!   [`THEIL_SEN_SAMPLED_PAIRS`] pairs drawn by a fixed-seed generator (SplitMix64), so the
//!   same series always gets the same line and a long series costs O(m log m) time and a
//!   bounded amount of memory instead of n²/2 slopes (an 8,000-point series had 32 million:
//!   256 MB and seconds). The sampled median's error is far below the spread of the slopes:
//!   its standard error is about `1.25 · IQR/1.35 / √m`.
//! - [`mann_kendall`]: the Mann–Kendall trend test. `S = Σᵢ<ⱼ sign(yⱼ − yᵢ)`, counted
//!   exactly in O(n log n) as (pairs in order) − (pairs out of order) by a merge sort, not
//!   pair by pair;
//!   `Var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18` over groups of `t` tied values;
//!   `Z = (S − 1)/√Var` for `S > 0`, `(S + 1)/√Var` for `S < 0`, else 0 (continuity
//!   correction); two-sided `p = erfc(|Z| / √2)`; Kendall's `τ = S / (n(n−1)/2)`. This is what
//!   `pymannkendall.original_test` reports.
//! - [`erfc`] and [`normal_cdf`]: the complementary error function, from its power series
//!   `erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))` (all terms positive, so no
//!   cancellation) below 1.5 and the Laplace continued fraction
//!   `erfc(x) = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))`, 100 levels deep, from 1.5
//!   on. Relative error below 1e-14 on (0, 8) against 40-digit mpmath, so absolute error below
//!   2e-14 everywhere (the golden tests compare with scipy at 1e-12).
//! - [`holt`] and [`holt_grid`]: Holt's linear (double exponential) smoothing. The state starts
//!   at `ℓ₁ = y₁`, `b₁ = y₂ − y₁`; for `t = 2..n` the one-step forecast is `ŷₜ = ℓₜ₋₁ + bₜ₋₁`,
//!   then `ℓₜ = α·yₜ + (1 − α)(ℓₜ₋₁ + bₜ₋₁)` and `bₜ = β(ℓₜ − ℓₜ₋₁) + (1 − β)·bₜ₋₁`. The
//!   h-step forecast is `ℓₙ + h·bₙ`, its variance `σ²[1 + Σⱼ₌₁..ₕ₋₁ α²(1 + jβ)²]` with `σ²` the
//!   mean squared one-step residual (`SSE / (n − 1)`). [`holt_grid`] picks `α, β` from
//!   `0.05, 0.10, …, 0.95` by the smallest one-step SSE (ties: the smaller `α`, then `β`).
//!   This equals statsmodels' `Holt(y, initialization_method="known",
//!   initial_level=2·y₁ − y₂, initial_trend=y₂ − y₁).fit(α, β, optimized=False)`.

use std::cmp::Ordering;

/// `z` of the two-sided 80% normal interval: Φ⁻¹(0.9).
pub const Z_80: f64 = 1.281_551_565_545;

/// Consistency constant of the MAD for normal data: Φ⁻¹(0.75).
pub const MAD_TO_Z: f64 = 0.6745;

/// √(π/2): turns a mean absolute deviation into a normal standard deviation.
pub const MEAN_AD_TO_SIGMA: f64 = 1.2533;

/// The median; the mean of the two middle values for an even count. `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The median absolute deviation around the median, unscaled
/// (`scipy.stats.median_abs_deviation(x, scale=1)`). `None` when empty.
pub fn mad(values: &[f64]) -> Option<f64> {
    let center = median(values)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    median(&deviations)
}

/// The mean absolute deviation around `center`. `None` when empty.
pub fn mean_abs_dev(values: &[f64], center: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().map(|v| (v - center).abs()).sum::<f64>() / values.len() as f64)
}

/// A Theil–Sen line `y = intercept + slope · x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TheilSen {
    pub slope: f64,
    pub intercept: f64,
}

impl TheilSen {
    /// The line's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// Up to this many points [`theil_sen`] takes the median over every pair (about 1.1 million
/// slopes at most).
pub const THEIL_SEN_EXACT_POINTS: usize = 1_500;

/// Above [`THEIL_SEN_EXACT_POINTS`], how many pairs [`theil_sen`] samples.
pub const THEIL_SEN_SAMPLED_PAIRS: usize = 200_000;

/// The Theil–Sen line through `(x[i], y[i])`. `None` when the lengths differ or no two points
/// have different `x`. Exact up to [`THEIL_SEN_EXACT_POINTS`] points, sampled above (see the
/// module docs); [`theil_sen_is_exact`] says which a series gets.
pub fn theil_sen(x: &[f64], y: &[f64]) -> Option<TheilSen> {
    if x.len() != y.len() {
        return None;
    }
    let n = x.len();
    let mut slopes = if theil_sen_is_exact(n) {
        let mut slopes = Vec::with_capacity(n.saturating_sub(1) * n / 2);
        for i in 0..n {
            for j in (i + 1)..n {
                let dx = x[j] - x[i];
                if dx != 0.0 {
                    slopes.push((y[j] - y[i]) / dx);
                }
            }
        }
        slopes
    } else {
        sampled_slopes(x, y, THEIL_SEN_SAMPLED_PAIRS)
    };
    let slope = median_in_place(&mut slopes)?;
    let intercept = median(y)? - slope * median(x)?;
    Some(TheilSen { slope, intercept })
}

/// Whether [`theil_sen`] takes every pair of a series of `n` points.
pub fn theil_sen_is_exact(n: usize) -> bool {
    n <= THEIL_SEN_EXACT_POINTS
}

/// The slopes of `pairs` pairs `i < j` drawn uniformly by SplitMix64 from a fixed seed
/// (pairs with equal `x` give no slope).
fn sampled_slopes(x: &[f64], y: &[f64], pairs: usize) -> Vec<f64> {
    let n = x.len() as u64;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ n;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut slopes = Vec::with_capacity(pairs);
    while slopes.len() < pairs {
        let (a, b) = ((next() % n) as usize, (next() % n) as usize);
        let (i, j) = (a.min(b), a.max(b));
        let dx = x[j] - x[i];
        if i != j && dx != 0.0 {
            slopes.push((y[j] - y[i]) / dx);
        } else if slopes.is_empty() && x.iter().all(|v| *v == x[0]) {
            // No two points differ in `x`: no slope will ever come.
            break;
        }
    }
    slopes
}

/// The median, reordering `values` (selection, not a full sort). `None` when empty.
fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (below, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = below.iter().copied().max_by(f64::total_cmp)?;
    Some((lower + upper) / 2.0)
}

/// The median of `sorted` (ascending) without its element at `skip`, as [`median`] of the
/// others would give it, in O(1). `None` when nothing is left.
pub fn median_without(sorted: &[f64], skip: usize) -> Option<f64> {
    let m = sorted.len().checked_sub(1)?;
    if m == 0 || skip > m {
        return None;
    }
    let at = |j: usize| if j < skip { sorted[j] } else { sorted[j + 1] };
    let mid = m / 2;
    Some(if m % 2 == 1 {
        at(mid)
    } else {
        (at(mid - 1) + at(mid)) / 2.0
    })
}

/// The Mann–Kendall test's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    pub n: usize,
    /// `S = Σᵢ<ⱼ sign(yⱼ − yᵢ)`.
    pub s: f64,
    /// `Var(S)` with the tie correction.
    pub var_s: f64,
    /// Continuity-corrected normal score.
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    /// Kendall's τ-a, `S / (n(n−1)/2)`.
    pub tau: f64,
}

/// The Mann–Kendall test of `y` in the order given. `None` below 2 values or when every value
/// is tied (no variance).
pub fn mann_kendall(y: &[f64]) -> Option<MannKendall> {
    let n = y.len();
    if n < 2 {
        return None;
    }
    // Pairs out of order (i < j, yᵢ > yⱼ), counted while merge-sorting; pairs in order are
    // the rest but the tied ones.
    let mut sorted = y.to_vec();
    let mut buffer = vec![0.0; n];
    let discordant = merge_count(&mut sorted, &mut buffer);
    let mut ties = 0.0;
    let mut tied_pairs: i64 = 0;
    let mut run = 1.0_f64;
    for k in 1..=n {
        if k < n && sorted[k] == sorted[k - 1] {
            run += 1.0;
        } else {
            ties += run * (run - 1.0) * (2.0 * run + 5.0);
            tied_pairs += (run * (run - 1.0) / 2.0) as i64;
            run = 1.0;
        }
    }
    let pairs = (n as i64) * (n as i64 - 1) / 2;
    let concordant = pairs - tied_pairs - discordant;
    let s = concordant - discordant;
    let nf = n as f64;
    let var_s = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var_s <= 0.0 {
        return None;
    }
    let s = s as f64;
    let z = match s.partial_cmp(&0.0) {
        Some(Ordering::Greater) => (s - 1.0) / var_s.sqrt(),
        Some(Ordering::Less) => (s + 1.0) / var_s.sqrt(),
        _ => 0.0,
    };
    Some(MannKendall {
        n,
        s,
        var_s,
        z,
        p_value: two_sided_p(z),
        tau: s / (nf * (nf - 1.0) / 2.0),
    })
}

/// Sorts `values` ascending (a stable merge sort) and answers how many pairs `i < j` had
/// `values[i] > values[j]` (equal values are not out of order).
fn merge_count(values: &mut [f64], buffer: &mut [f64]) -> i64 {
    let n = values.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = merge_count(&mut values[..mid], &mut buffer[..mid])
        + merge_count(&mut values[mid..], &mut buffer[mid..]);
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if values[i] <= values[j] {
            buffer[k] = values[i];
            i += 1;
        } else {
            // values[j] is below every left value not yet taken.
            count += (mid - i) as i64;
            buffer[k] = values[j];
            j += 1;
        }
        k += 1;
    }
    buffer[k..k + mid - i].copy_from_slice(&values[i..mid]);
    k += mid - i;
    buffer[k..k + n - j].copy_from_slice(&values[j..n]);
    values.copy_from_slice(&buffer[..n]);
    count
}

/// The complementary error function `erfc(x) = 1 − erf(x)`; see the module docs.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 1.5 {
        // erf(x) = 2/√π e^(−x²) Σ 2ⁿ x^(2n+1) / (2n+1)!!
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut k = 0.0;
        while term > sum * 1e-17 {
            k += 1.0;
            term *= 2.0 * x2 / (2.0 * k + 1.0);
            sum += term;
        }
        1.0 - two_over_sqrt_pi * (-x2).exp() * sum
    } else {
        // Laplace's continued fraction, evaluated from a fixed depth upward; at x ≥ 1.5 a
        // hundred levels reach double precision.
        let mut tail = x;
        for k in (1..=100).rev() {
            tail = x + (f64::from(k) / 2.0) / tail;
        }
        (two_over_sqrt_pi / 2.0) * (-x * x).exp() / tail
    }
}

/// The standard normal CDF Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Two-sided normal p-value of a z-score, `2(1 − Φ(|z|))`.
pub fn two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// A Holt's linear smoothing fit with fixed `alpha` (level) and `beta` (trend).
#[derive(Debug, Clone, PartialEq)]
pub struct HoltFit {
    pub alpha: f64,
    pub beta: f64,
    /// `ℓₙ`, the level after the last value.
    pub level: f64,
    /// `bₙ`, the trend per step after the last value.
    pub trend: f64,
    /// One-step forecasts `ŷ₂ … ŷₙ` of `y₂ … yₙ` (the first value starts the state).
    pub fitted: Vec<f64>,
    /// `Σ (yₜ − ŷₜ)²` over `t = 2..n`.
    pub sse: f64,
}

impl HoltFit {
    /// The `h`-step-ahead forecast `ℓₙ + h·bₙ`.
    pub fn forecast(&self, h: usize) -> f64 {
        self.level + h as f64 * self.trend
    }

    /// `σ²`, the mean squared one-step residual.
    pub fn sigma2(&self) -> f64 {
        if self.fitted.is_empty() {
            0.0
        } else {
            self.sse / self.fitted.len() as f64
        }
    }

    /// The `h`-step forecast variance `σ²[1 + Σⱼ₌₁..ₕ₋₁ α²(1 + jβ)²]` (`h ≥ 1`).
    pub fn forecast_variance(&self, h: usize) -> f64 {
        let sum: f64 = (1..h)
            .map(|j| {
                let c = self.alpha * (1.0 + j as f64 * self.beta);
                c * c
            })
            .sum();
        self.sigma2() * (1.0 + sum)
    }

    /// The `h`-step prediction interval `forecast ± z·√variance`.
    pub fn interval(&self, h: usize, z: f64) -> (f64, f64) {
        let f = self.forecast(h);
        let half = z * self.forecast_variance(h).sqrt();
        (f - half, f + half)
    }
}

/// Holt's linear smoothing of `y` with fixed `alpha` and `beta` (both in `[0, 1]`); see the
/// module docs. `None` below 2 values or for parameters outside `[0, 1]`.
pub fn holt(y: &[f64], alpha: f64, beta: f64) -> Option<HoltFit> {
    if y.len() < 2 || !(0.0..=1.0).contains(&alpha) || !(0.0..=1.0).contains(&beta) {
        return None;
    }
    let mut level = y[0];
    let mut trend = y[1] - y[0];
    let mut fitted = Vec::with_capacity(y.len() - 1);
    let mut sse = 0.0;
    for &value in &y[1..] {
        let predicted = level + trend;
        fitted.push(predicted);
        sse += (value - predicted) * (value - predicted);
        let new_level = alpha * value + (1.0 - alpha) * predicted;
        trend = beta * (new_level - level) + (1.0 - beta) * trend;
        level = new_level;
    }
    Some(HoltFit {
        alpha,
        beta,
        level,
        trend,
        fitted,
        sse,
    })
}

/// The values [`holt_grid`] tries for `α` and for `β`: 0.05, 0.10, …, 0.95.
pub fn holt_grid_values() -> impl Iterator<Item = f64> + Clone {
    (1..=19).map(|k| f64::from(k) / 20.0)
}

/// The [`holt`] fit with the smallest one-step SSE over the grid of [`holt_grid_values`] for
/// both `α` and `β` (ties keep the smaller `α`, then the smaller `β`). `None` below 2 values.
pub fn holt_grid(y: &[f64]) -> Option<HoltFit> {
    let mut best: Option<HoltFit> = None;
    for alpha in holt_grid_values() {
        for beta in holt_grid_values() {
            let Some(fit) = holt(y, alpha, beta) else {
                continue;
            };
            if best.as_ref().is_none_or(|b| fit.sse < b.sse) {
                best = Some(fit);
            }
        }
    }
    best
}

/// An additive Holt–Winters fit (ETS(A,A,A)) with fixed `alpha` (level), `beta` (trend) and
/// `gamma` (season) over a season of `period` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalFit {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub period: usize,
    /// `ℓₙ`, the level after the last value.
    pub level: f64,
    /// `bₙ`, the trend per step after the last value.
    pub trend: f64,
    /// The last `period` seasonal states `sₙ₋ₘ₊₁ … sₙ`: `season[(h − 1) mod m]` applies to
    /// the step `n + h`.
    pub season: Vec<f64>,
    /// One-step forecasts `ŷ₁ … ŷₙ` (the first season's come from the starting state).
    pub fitted: Vec<f64>,
    /// `Σ (yₜ − ŷₜ)²` over `t = 1..n`.
    pub sse: f64,
}

impl SeasonalFit {
    /// The `h`-step-ahead forecast `ℓₙ + h·bₙ + sₙ₊ₕ₋ₘ₍ₖ₊₁₎` (`k = ⌊(h − 1)/m⌋`).
    pub fn forecast(&self, h: usize) -> f64 {
        self.level + h as f64 * self.trend + self.season[(h.max(1) - 1) % self.period]
    }

    /// `σ²`, the mean squared one-step residual.
    pub fn sigma2(&self) -> f64 {
        if self.fitted.is_empty() {
            0.0
        } else {
            self.sse / self.fitted.len() as f64
        }
    }

    /// The `h`-step forecast variance `σ²[1 + Σⱼ₌₁..ₕ₋₁ (α(1 + jβ) + γ·[j mod m = 0])²]`
    /// (Hyndman et al., *Forecasting with Exponential Smoothing*, class 1, ETS(A,A,A)).
    pub fn forecast_variance(&self, h: usize) -> f64 {
        let sum: f64 = (1..h)
            .map(|j| {
                let seasonal = if j % self.period == 0 {
                    self.gamma
                } else {
                    0.0
                };
                let c = self.alpha * (1.0 + j as f64 * self.beta) + seasonal;
                c * c
            })
            .sum();
        self.sigma2() * (1.0 + sum)
    }

    /// The `h`-step prediction interval `forecast ± z·√variance`.
    pub fn interval(&self, h: usize, z: f64) -> (f64, f64) {
        let f = self.forecast(h);
        let half = z * self.forecast_variance(h).sqrt();
        (f - half, f + half)
    }
}

/// The starting state of an additive Holt–Winters fit from the first two seasons: the trend
/// `b₀` is the difference of their means over `m`, the level `ℓ₀` puts the first season's
/// mean at its middle (`ℓ₀ = mean₁ − b₀(m + 1)/2`), and each seasonal state is the first
/// season's value less that line (`sᵢ₋ₘ = yᵢ − (ℓ₀ + i·b₀)`, `i = 1..m`). `None` below two
/// seasons.
pub fn seasonal_start(y: &[f64], m: usize) -> Option<(f64, f64, Vec<f64>)> {
    if m < 2 || y.len() < 2 * m {
        return None;
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, second) = (mean(&y[..m]), mean(&y[m..2 * m]));
    let trend = (second - first) / m as f64;
    let level = first - trend * (m as f64 + 1.0) / 2.0;
    let season = (1..=m)
        .map(|i| y[i - 1] - (level + i as f64 * trend))
        .collect();
    Some((level, trend, season))
}

/// Additive Holt–Winters smoothing of `y` with fixed `alpha`, `beta`, `gamma` (each in
/// `[0, 1]`) and a season of `m` steps, from [`seasonal_start`]:
/// `ℓₜ = α(yₜ − sₜ₋ₘ) + (1 − α)(ℓₜ₋₁ + bₜ₋₁)`, `bₜ = β(ℓₜ − ℓₜ₋₁) + (1 − β)bₜ₋₁`,
/// `sₜ = γ(yₜ − ℓₜ₋₁ − bₜ₋₁) + (1 − γ)sₜ₋ₘ`. This equals statsmodels'
/// `ExponentialSmoothing(y, trend="add", seasonal="add", seasonal_periods=m,
/// initialization_method="known", …)` fitted with the same parameters and
/// `optimized=False`. `None` below two seasons or for parameters outside `[0, 1]`.
pub fn holt_winters(y: &[f64], m: usize, alpha: f64, beta: f64, gamma: f64) -> Option<SeasonalFit> {
    if [alpha, beta, gamma]
        .iter()
        .any(|p| !(0.0..=1.0).contains(p))
    {
        return None;
    }
    let (mut level, mut trend, mut season) = seasonal_start(y, m)?;
    let mut fitted = Vec::with_capacity(y.len());
    let mut sse = 0.0;
    for (t, &value) in y.iter().enumerate() {
        let s = season[t % m];
        let predicted = level + trend + s;
        fitted.push(predicted);
        sse += (value - predicted) * (value - predicted);
        let new_level = alpha * (value - s) + (1.0 - alpha) * (level + trend);
        season[t % m] = gamma * (value - level - trend) + (1.0 - gamma) * s;
        trend = beta * (new_level - level) + (1.0 - beta) * trend;
        level = new_level;
    }
    // In order from the step after the last value.
    let n = y.len();
    let season = (0..m).map(|j| season[(n + j) % m]).collect();
    Some(SeasonalFit {
        alpha,
        beta,
        gamma,
        period: m,
        level,
        trend,
        season,
        fitted,
        sse,
    })
}

/// The [`holt_winters`] fit with the smallest one-step SSE over the grid of
/// [`holt_grid_values`] for `α`, `β` and `γ` (ties keep the smaller `α`, then `β`, then `γ`).
pub fn holt_winters_grid(y: &[f64], m: usize) -> Option<SeasonalFit> {
    let mut best: Option<SeasonalFit> = None;
    for alpha in holt_grid_values() {
        for beta in holt_grid_values() {
            for gamma in holt_grid_values() {
                let fit = holt_winters(y, m, alpha, beta, gamma)?;
                if best.as_ref().is_none_or(|b| fit.sse < b.sse) {
                    best = Some(fit);
                }
            }
        }
    }
    best
}

/// The sample autocorrelation of `e` at `lag`: `Σ (eₜ − ē)(eₜ₊ₗ − ē) / Σ (eₜ − ē)²`.
pub fn autocorrelation(e: &[f64], lag: usize) -> Option<f64> {
    if lag == 0 || e.len() <= lag {
        return None;
    }
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let denominator: f64 = e.iter().map(|v| (v - mean) * (v - mean)).sum();
    if denominator <= 0.0 {
        return None;
    }
    let numerator: f64 = e
        .iter()
        .zip(&e[lag..])
        .map(|(a, b)| (a - mean) * (b - mean))
        .sum();
    Some(numerator / denominator)
}

/// Akaike's information criterion of a least-squares fit: `n·ln(SSE/n) + 2k`.
pub fn aic(sse: f64, n: usize, k: usize) -> f64 {
    let n_f = n as f64;
    n_f * (sse.max(f64::MIN_POSITIVE) / n_f).ln() + 2.0 * k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        // |x − 2| = 1, 1, 0, 2, 7 → median 1
        assert_eq!(mad(&[1.0, 3.0, 2.0, 4.0, 9.0]), Some(1.0));
        assert_eq!(mad(&[5.0; 4]), Some(0.0));
        assert_eq!(mean_abs_dev(&[1.0, 3.0], 2.0), Some(1.0));
    }

    #[test]
    fn theil_sen_on_an_exact_line_and_with_one_outlier() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|x| 3.0 + 2.0 * x).collect();
        let line = theil_sen(&x, &y).expect("line");
        assert!((line.slope - 2.0).abs() < 1e-12);
        assert!((line.intercept - 3.0).abs() < 1e-12);
        let mut y2 = y.clone();
        y2[7] = 500.0;
        let robust = theil_sen(&x, &y2).expect("line");
        assert!((robust.slope - 2.0).abs() < 1e-12, "{robust:?}");
        assert_eq!(theil_sen(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(theil_sen(&[1.0], &[1.0, 2.0]), None);
    }

    /// `S` pair by pair, as the definition says.
    fn naive_s(y: &[f64]) -> f64 {
        let mut s = 0.0;
        for i in 0..y.len() {
            for j in (i + 1)..y.len() {
                s += match y[j].partial_cmp(&y[i]) {
                    Some(Ordering::Greater) => 1.0,
                    Some(Ordering::Less) => -1.0,
                    _ => 0.0,
                };
            }
        }
        s
    }

    /// A noisy, tied, trending series of `n` points (deterministic).
    fn noisy(n: usize, slope: f64) -> (Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let y = x
            .iter()
            .map(|&i| (slope * i + ((i * 7919.0) % 97.0) - 48.0).round())
            .collect();
        (x, y)
    }

    #[test]
    fn mann_kendall_by_merge_sort_equals_the_pairwise_count() {
        for n in [2, 3, 10, 57, 400] {
            for slope in [0.0, 0.05, -0.3] {
                let (_, y) = noisy(n, slope);
                let mk = mann_kendall(&y).expect("mk");
                assert_eq!(mk.s, naive_s(&y), "n {n} slope {slope}");
            }
        }
        assert_eq!(mann_kendall(&[1.0, 1.0, 1.0]), None);
    }

    #[test]
    fn median_without_equals_the_median_of_the_others() {
        let values = [5.0, 1.0, 9.0, 1.0, 7.0, 3.0, 3.0];
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for skip in 0..sorted.len() {
            let mut others = sorted.clone();
            others.remove(skip);
            assert_eq!(median_without(&sorted, skip), median(&others), "{skip}");
        }
        assert_eq!(median_without(&[1.0], 0), None);
    }

    #[test]
    fn a_long_series_gets_a_sampled_theil_sen_close_to_the_exact_one() {
        // Just above the exact bound: the sample's slope against every pair's.
        let n = THEIL_SEN_EXACT_POINTS + 500;
        let (x, y) = noisy(n, 0.8);
        assert!(!theil_sen_is_exact(n) && theil_sen_is_exact(THEIL_SEN_EXACT_POINTS));
        let sampled = theil_sen(&x, &y).expect("line");
        let mut all = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                all.push((y[j] - y[i]) / (x[j] - x[i]));
            }
        }
        let exact = median(&all).expect("median");
        assert!(
            (sampled.slope - exact).abs() < 0.01,
            "{} vs {exact}",
            sampled.slope
        );
        // The same series, the same line; and 8,000 points stay bounded.
        assert_eq!(theil_sen(&x, &y), Some(sampled));
        let (x, y) = noisy(8_000, -0.25);
        let line = theil_sen(&x, &y).expect("line");
        assert!((line.slope + 0.25).abs() < 0.01, "{}", line.slope);
        assert_eq!(theil_sen(&[1.0; 3000], &[2.0; 3000]), None);
    }

    #[test]
    fn mann_kendall_counts_and_tie_correction() {
        let mk = mann_kendall(&[1.0, 2.0, 3.0, 4.0]).expect("mk");
        assert_eq!(mk.s, 6.0);
        assert_eq!(mk.var_s, 4.0 * 3.0 * 13.0 / 18.0);
        assert_eq!(mk.tau, 1.0);
        // one tie group of 2: subtract 2·1·9 = 18
        let tied = mann_kendall(&[1.0, 2.0, 2.0, 4.0]).expect("mk");
        assert_eq!(tied.s, 5.0);
        assert_eq!(tied.var_s, (4.0 * 3.0 * 13.0 - 18.0) / 18.0);
        assert_eq!(mann_kendall(&[2.0, 2.0, 2.0]), None);
        assert_eq!(mann_kendall(&[2.0]), None);
        // S = 1 → Z = 0 after the continuity correction, p = 1.
        let one = mann_kendall(&[1.0, 3.0, 2.0]).expect("mk");
        assert_eq!((one.s, one.z, one.p_value), (1.0, 0.0, 1.0));
    }

    #[test]
    fn erfc_limits_symmetry_and_continuity_at_the_switch() {
        assert_eq!(erfc(0.0), 1.0);
        assert!((erfc(-1.0) - (2.0 - erfc(1.0))).abs() < 1e-16);
        assert!(erfc(40.0) >= 0.0 && erfc(40.0) < 1e-300);
        assert_eq!(erfc(-40.0), 2.0);
        assert!(erfc(f64::NAN).is_nan());
        // Across the switch from the series to the continued fraction the slope is
        // erfc'(1.5) = −2/√π·e^(−2.25) ≈ −0.1189.
        let below = erfc(1.5 - 1e-9);
        let above = erfc(1.5);
        let slope = -std::f64::consts::FRAC_2_SQRT_PI * (-2.25f64).exp();
        assert!(
            ((below - above) / -1e-9 - slope).abs() < 1e-5,
            "{below} {above}"
        );
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
        assert!((normal_cdf(1.2815515655446004) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn holt_on_a_straight_line_has_no_error_and_extends_it() {
        let y: Vec<f64> = (0..10).map(|i| 5.0 + 1.5 * f64::from(i)).collect();
        let fit = holt(&y, 0.3, 0.2).expect("fit");
        assert!(fit.sse < 1e-20);
        assert!((fit.forecast(3) - (5.0 + 1.5 * 12.0)).abs() < 1e-9);
        assert_eq!(fit.interval(3, Z_80).0, fit.interval(3, Z_80).1);
        assert_eq!(holt(&[1.0], 0.5, 0.5), None);
        assert_eq!(holt(&[1.0, 2.0], 1.5, 0.5), None);
        let grid: Vec<f64> = holt_grid_values().collect();
        assert_eq!(grid.len(), 19);
        assert_eq!(grid[0], 0.05);
        assert_eq!(grid[18], 0.95);
    }

    #[test]
    fn holt_variance_formula() {
        let fit = HoltFit {
            alpha: 0.5,
            beta: 0.2,
            level: 0.0,
            trend: 0.0,
            fitted: vec![0.0; 4],
            sse: 8.0,
        };
        // σ² = 2; h = 3: 1 + 0.25·1.2² + 0.25·1.4² = 1.85
        assert!((fit.forecast_variance(1) - 2.0).abs() < 1e-12);
        assert!((fit.forecast_variance(3) - 2.0 * 1.85).abs() < 1e-12);
    }
}
