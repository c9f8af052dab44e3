//! The sentence of an insight, written only from its `values` (and the Klip's number format).
//!
//! [`render`] reads the keys that [`crate::analysis::insights`] puts in each insight's `values`: so a
//! sentence never says more than the numbers next to it, and it says nothing about causes. A
//! missing key leaves its clause out rather than inventing a number.
//!
//! Numbers ([`format_number`]) are rounded for reading: whole numbers from 100 up, one decimal
//! from 10, two from 1, three significant digits below 1; trailing zeros dropped; thousands
//! separated by commas. Percentages ([`format_pct`]) get one decimal below 100. The Klip's
//! [`NumberStyle`] adds its unit: a currency symbol before (`$1,234`), a percent sign after
//! (changes of a percent metric are in points, `+2.1 pp`), any other unit after a space.
//!
//! A currency's symbol ([`currency_symbol`]) is `$` (USD), `€` (EUR), `£` (GBP), `¥` (JPY),
//! `CA$` (CAD), `A$` (AUD), `CHF ` (CHF), `₹` (INR) or `CN¥` (CNY); any other ISO 4217 code
//! is written before the number with a space (`SEK 1,234`).

use crate::analysis::insights::InsightType;
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::BTreeMap;

/// How a Klip's numbers are shown: `display.format` and an optional unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumberStyle {
    /// `number` (default), `currency` or `percent`.
    pub format: Option<String>,
    /// A currency symbol for `currency` (`$`, `€`, `USD `), otherwise a unit word (`users`).
    pub unit: Option<String>,
}

/// The currency of a `currency` Klip that names none and whose company names none.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Whether `code` is shaped like an ISO 4217 code: three upper-case ASCII letters. Any such
/// code is accepted (the list of codes changes; a code without a known symbol is written as
/// itself).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// What is written before an amount in `code` (see the module docs): a symbol, or the code
/// and a space.
pub fn currency_symbol(code: &str) -> String {
    match code {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        "CAD" => "CA$",
        "AUD" => "A$",
        "CHF" => "CHF ",
        "INR" => "₹",
        "CNY" => "CN¥",
        other => return format!("{other} "),
    }
    .to_owned()
}

impl NumberStyle {
    /// The style of a Klip with `display.format` = `format` whose amounts (if `currency`) are
    /// in the currency `currency` (an ISO 4217 code).
    pub fn of(format: Option<&str>, currency: &str) -> NumberStyle {
        NumberStyle {
            format: format.map(str::to_owned),
            unit: (format == Some("currency")).then(|| currency_symbol(currency)),
        }
    }

    fn is(&self, format: &str) -> bool {
        self.format.as_deref() == Some(format)
    }

    /// A value in the Klip's unit.
    pub fn value(&self, x: f64) -> String {
        let number = format_number(x.abs());
        let sign = if format_number(x).starts_with('-') {
            "-"
        } else {
            ""
        };
        self.with_unit(sign, &number)
    }

    /// A change in the Klip's unit, always signed (`+934`, `-$12`, `+2.1 pp`).
    pub fn change(&self, x: f64) -> String {
        let number = format_number(x.abs());
        let sign = if number == "0" {
            ""
        } else if x < 0.0 {
            "-"
        } else {
            "+"
        };
        if self.is("percent") {
            return format!("{sign}{number} pp");
        }
        self.with_unit(sign, &number)
    }

    fn with_unit(&self, sign: &str, number: &str) -> String {
        let unit = self.unit.as_deref().unwrap_or("");
        if self.is("currency") {
            format!("{sign}{unit}{number}")
        } else if self.is("percent") {
            format!("{sign}{number}%")
        } else if unit.is_empty() {
            format!("{sign}{number}")
        } else {
            format!("{sign}{number} {unit}")
        }
    }
}

/// A number for reading (see the module docs); `n/a` when not finite.
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let a = x.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        // three significant digits: 0.123, 0.0123, …
        (2 - a.log10().floor() as i32).clamp(0, 15) as usize
    };
    let fixed = format!("{a:.decimals$}");
    let trimmed = if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.')
    } else {
        fixed.as_str()
    };
    let (int, frac) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if !frac.is_empty() {
        grouped.push('.');
        grouped.push_str(frac);
    }
    if x < 0.0 && grouped.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// A percentage (`x` already × 100): `8.2%`, `150%`, unsigned.
pub fn format_pct(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let a = x.abs();
    let decimals = if a >= 100.0 { 0 } else { 1 };
    let fixed = format!("{a:.decimals$}");
    let trimmed = if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.')
    } else {
        fixed.as_str()
    };
    format!("{trimmed}%")
}

/// A p-value: `p < 0.001` or `p = 0.012`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p:.3}")
    }
}

/// A bucket's date as a phrase: `on 2026-03-10`, `in the week of 2026-03-09`,
/// `in March 2026`, `in Q1 2026`, `in 2026`.
pub fn when(bucket: &str, date: &str) -> String {
    let Ok(d) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return format!("on {date}");
    };
    match bucket {
        "week" => format!("in the week of {date}"),
        "month" => format!("in {}", d.format("%B %Y")),
        "quarter" => {
            use chrono::Datelike;
            format!("in Q{} {}", d.month0() / 3 + 1, d.format("%Y"))
        }
        "year" => format!("in {}", d.format("%Y")),
        _ => format!("on {date}"),
    }
}

/// `n` buckets: `1 day`, `20 days`.
fn count(n: f64, bucket: &str) -> String {
    let n_text = format_number(n);
    if n_text == "1" {
        format!("1 {bucket}")
    } else {
        format!("{n_text} {bucket}s")
    }
}

/// `n` complete buckets: `1 complete day`, `29 complete days`. A record is among the
/// buckets that have ended, which a window in progress has one fewer of than its label
/// counts (`2026-11-07 – 2026-12-06 (30 days, the last one in progress)`).
fn complete(n: f64, bucket: &str) -> String {
    count(n, &format!("complete {bucket}"))
}

/// The values of one insight, read by key.
struct Values<'a>(&'a BTreeMap<String, Value>);

impl Values<'_> {
    fn num(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }
    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn flag(&self, key: &str) -> Option<bool> {
        self.0.get(key).and_then(Value::as_bool)
    }
    fn name(&self) -> &str {
        self.text("name").unwrap_or("The metric")
    }
    fn period(&self) -> &str {
        self.text("period").unwrap_or("the window")
    }
    fn bucket(&self) -> &str {
        self.text("bucket").unwrap_or("point")
    }
}

fn up_down(x: f64) -> &'static str {
    if x < 0.0 {
        "down"
    } else {
        "up"
    }
}

/// The sentence of an insight of type `kind` from its `values`; see the module docs.
pub fn render(kind: InsightType, values: &BTreeMap<String, Value>, style: &NumberStyle) -> String {
    let v = Values(values);
    match kind {
        InsightType::PeriodOverPeriod => period_over_period(&v, style),
        InsightType::Trend => trend(&v, style),
        InsightType::Anomaly => anomaly(&v, style),
        InsightType::Record => record(&v, style),
        InsightType::Goal => goal(&v, style),
        InsightType::Driver => driver(&v, style),
        InsightType::Concentration => concentration(&v, style),
        InsightType::Forecast => forecast(&v, style),
    }
}

/// The sentence of a `period_over_period` insight.
fn period_over_period(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let period = v.period();
    let opt = |key: &str| v.num(key);
    let (Some(current), Some(previous), Some(change), Some(pct)) = (
        opt("current"),
        opt("previous"),
        opt("change"),
        opt("change_pct"),
    ) else {
        return format!("{name}: no comparison.");
    };
    let before = v.text("previous_period").unwrap_or("the previous period");
    let mut s = format!(
        "{name}: {} in {period}, {} {} ({}) from {} in {before}.",
        style.value(current),
        up_down(change),
        format_pct(pct),
        style.change(change),
        style.value(previous)
    );
    if let (Some(year_ago), Some(yoy_change), Some(yoy_pct)) = (
        opt("previous_year"),
        opt("change_yoy"),
        opt("change_yoy_pct"),
    ) {
        let when = v
            .text("year_ago_period")
            .unwrap_or("the same period a year earlier");
        s.push_str(&format!(
            " Against {} in {when}: {} {}.",
            style.value(year_ago),
            up_down(yoy_change),
            format_pct(yoy_pct)
        ));
    }
    s
}

/// The sentence of a `trend` insight.
fn trend(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let bucket = v.bucket();
    let opt = |key: &str| v.num(key);
    let (Some(slope), Some(n), Some(total), Some(p)) =
        (opt("slope"), opt("n"), opt("total_change"), opt("p_value"))
    else {
        return format!("{name}: no trend.");
    };
    let verb = if slope < 0.0 { "fell" } else { "rose" };
    let dates = match (v.text("first_date"), v.text("last_date")) {
        (Some(a), Some(b)) => format!(" ({a} – {b})"),
        _ => String::new(),
    };
    format!(
        "{name} {verb} by about {} per {bucket} across {}{dates}, {} in all \
         (Theil–Sen slope; Mann–Kendall {}).",
        style.value(slope.abs()),
        count(n, bucket),
        style.change(total),
        format_p(p)
    )
}

/// The sentence of a `anomaly` insight.
fn anomaly(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let bucket = v.bucket();
    let opt = |key: &str| v.num(key);
    let (Some(actual), Some(expected), Some(low), Some(high), Some(z)) = (
        opt("actual"),
        opt("expected"),
        opt("low"),
        opt("high"),
        opt("z"),
    ) else {
        return format!("{name}: no anomaly.");
    };
    let side = if actual < expected { "below" } else { "above" };
    format!(
        "{name}: {} {}, {side} the expected {} (usual range {} – {}; robust z = {}).",
        style.value(actual),
        when(bucket, v.text("date").unwrap_or("?")),
        style.value(expected),
        style.value(low),
        style.value(high),
        format_number((z * 10.0).round() / 10.0)
    )
}

/// The sentence of a `record` insight.
fn record(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let period = v.period();
    let bucket = v.bucket();
    let opt = |key: &str| v.num(key);
    let n = opt("n").unwrap_or(0.0);
    if let (Some(record), Some(kind)) = (opt("value"), v.text("record")) {
        let word = if kind == "low" { "lowest" } else { "highest" };
        let mut s = format!(
            "{name}: {} {} is the {word} of the {} in {period}",
            style.value(record),
            when(bucket, v.text("date").unwrap_or("?")),
            complete(n, bucket),
        );
        if let (Some(prev), Some(date)) = (opt("previous_record"), v.text("previous_date")) {
            s.push_str(&format!(
                ", past the previous {} of {} {}",
                if kind == "low" { "low" } else { "high" },
                style.value(prev),
                when(bucket, date)
            ));
        }
        s.push('.');
        return s;
    }
    let mut parts = Vec::new();
    if let (Some(high), Some(date)) = (opt("highest"), v.text("highest_date")) {
        parts.push(format!(
            "highest {} {}",
            style.value(high),
            when(bucket, date)
        ));
    }
    if let (Some(low), Some(date)) = (opt("lowest"), v.text("lowest_date")) {
        parts.push(format!(
            "lowest {} {}",
            style.value(low),
            when(bucket, date)
        ));
    }
    format!(
        "{name} in {period}, across its {}: {}.",
        complete(n, bucket),
        parts.join(", ")
    )
}

/// The sentence of a `goal` insight.
fn goal(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let period = v.period();
    let opt = |key: &str| v.num(key);
    let (Some(current), Some(target)) = (opt("current"), opt("target")) else {
        return format!("{name}: no goal.");
    };
    let of_target = opt("attainment_pct")
        .map(|a| format!(", {} of the target {}", format_pct(a), style.value(target)))
        .unwrap_or_else(|| format!(" against the target {}", style.value(target)));
    let elapsed = opt("elapsed_pct").unwrap_or(100.0);
    let status = match v.flag("on_track") {
        Some(true) => "on track",
        Some(false) => "behind",
        None => "",
    };
    if elapsed >= 100.0 {
        return format!(
            "{name}: {} for {period}{of_target} ({status}).",
            style.value(current)
        );
    }
    let mut s = format!(
        "{name}: {} with {} of {period} elapsed{of_target}",
        style.value(current),
        format_pct(elapsed)
    );
    if let Some(pace) = opt("pace") {
        s.push_str(&format!("; at this pace it ends at {}", style.value(pace)));
        if let Some(pct) = opt("pace_pct") {
            s.push_str(&format!(" ({} of target)", format_pct(pct)));
        }
    }
    s.push_str(&format!(", {status}."));
    s
}

/// The sentence of a `driver` insight.
fn driver(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let opt = |key: &str| v.num(key);
    let (Some(group), Some(share), Some(change), Some(total)) = (
        v.text("group"),
        opt("share_pct"),
        opt("group_change"),
        opt("total_change"),
    ) else {
        return format!("{name}: no driver.");
    };
    let mut s = format!(
        "{group} accounts for {} of the change in {name} ({} of {})",
        format_pct(share),
        style.change(change),
        style.change(total)
    );
    if let (Some(before), Some(after)) = (opt("group_previous"), opt("group_current")) {
        s.push_str(&format!(
            ": from {} to {}",
            style.value(before),
            style.value(after)
        ));
    }
    s.push('.');
    s
}

/// The sentence of a `concentration` insight.
fn concentration(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let period = v.period();
    let opt = |key: &str| v.num(key);
    let (Some(group), Some(share), Some(value), Some(total)) = (
        v.text("group"),
        opt("share_pct"),
        opt("group_value"),
        opt("total"),
    ) else {
        return format!("{name}: no concentration.");
    };
    format!(
        "{group} makes up {} of {name} in {period} ({} of {}).",
        format_pct(share),
        style.value(value),
        style.value(total)
    )
}

/// The sentence of a `forecast` insight.
fn forecast(v: &Values, style: &NumberStyle) -> String {
    let name = v.name();
    let bucket = v.bucket();
    let opt = |key: &str| v.num(key);
    let (Some(forecast), Some(low), Some(high), Some(h)) =
        (opt("forecast"), opt("lower"), opt("upper"), opt("horizon"))
    else {
        return format!("{name}: no forecast.");
    };
    let mut s = format!(
        "{name} is forecast at {} {} (80% interval {} – {}), {} ahead",
        style.value(forecast),
        when(bucket, v.text("forecast_date").unwrap_or("?")),
        style.value(low),
        style.value(high),
        count(h, bucket)
    );
    if let Some(last) = opt("last_value") {
        s.push_str(&format!(
            " of the last complete one ({})",
            style.value(last)
        ));
    }
    match (v.text("model"), v.text("season")) {
        (Some("holt_winters"), Some(season)) => {
            s.push_str(&format!(" (additive Holt–Winters with a {season} season)."))
        }
        _ => s.push_str(" (Holt's linear smoothing)."),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_for_reading_with_thousands_separators() {
        let cases = [
            (0.0, "0"),
            (1234567.4, "1,234,567"),
            (999.6, "1,000"),
            (123.4, "123"),
            (12.34, "12.3"),
            (12.0, "12"),
            (1.234, "1.23"),
            (0.012345, "0.0123"),
            (0.5, "0.5"),
            (-4321.0, "-4,321"),
            (-0.0001, "-0.0001"),
            (-0.0, "0"),
            (f64::NAN, "n/a"),
        ];
        for (x, want) in cases {
            assert_eq!(format_number(x), want, "{x}");
        }
        assert_eq!(format_pct(8.24), "8.2%");
        assert_eq!(format_pct(-150.4), "150%");
        assert_eq!(format_pct(5.0), "5%");
        assert_eq!(format_p(0.0004), "p < 0.001");
        assert_eq!(format_p(0.01234), "p = 0.012");
    }

    #[test]
    fn styles_put_units_where_they_belong() {
        let money = NumberStyle {
            format: Some("currency".into()),
            unit: Some("$".into()),
        };
        assert_eq!(money.value(-1234.0), "-$1,234");
        assert_eq!(money.change(934.2), "+$934");
        let pct = NumberStyle {
            format: Some("percent".into()),
            unit: None,
        };
        assert_eq!(pct.value(12.34), "12.3%");
        assert_eq!(pct.change(-2.1), "-2.1 pp");
        let users = NumberStyle {
            format: None,
            unit: Some("users".into()),
        };
        assert_eq!(users.value(1500.0), "1,500 users");
        assert_eq!(NumberStyle::default().change(0.0), "0");
    }

    #[test]
    fn currencies_get_their_symbol_or_their_code() {
        let cases = [
            ("USD", "$1,234", "-$12"),
            ("EUR", "€1,234", "-€12"),
            ("GBP", "£1,234", "-£12"),
            ("JPY", "¥1,234", "-¥12"),
            ("CAD", "CA$1,234", "-CA$12"),
            ("AUD", "A$1,234", "-A$12"),
            ("CHF", "CHF 1,234", "-CHF 12"),
            ("INR", "₹1,234", "-₹12"),
            ("CNY", "CN¥1,234", "-CN¥12"),
            ("SEK", "SEK 1,234", "-SEK 12"),
        ];
        for (code, value, change) in cases {
            let style = NumberStyle::of(Some("currency"), code);
            assert_eq!(style.value(1234.4), value, "{code}");
            assert_eq!(style.change(-12.0), change, "{code}");
        }
        // Only a currency Klip shows a currency.
        assert_eq!(
            NumberStyle::of(Some("number"), "EUR").value(1234.0),
            "1,234"
        );
        assert_eq!(NumberStyle::of(None, "EUR").value(5.0), "5");
        assert_eq!(NumberStyle::of(Some("percent"), "EUR").value(5.0), "5%");
        for good in ["USD", "SEK", "XAU", "ZZZ"] {
            assert!(is_currency_code(good), "{good}");
        }
        for bad in ["usd", "US", "USDT", "U$D", "", "ÉUR", "€"] {
            assert!(!is_currency_code(bad), "{bad}");
        }
    }

    #[test]
    fn records_count_complete_buckets() {
        let values: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "name": "Signups", "bucket": "day", "n": 29,
            "period": "2026-11-07 – 2026-12-06 (30 days, the last one in progress)",
            "highest": 400, "highest_date": "2026-11-20", "lowest": 99, "lowest_date": "2026-11-08"
        }))
        .expect("values");
        let money = NumberStyle::of(Some("currency"), "EUR");
        assert_eq!(
            render(InsightType::Record, &values, &money),
            "Signups in 2026-11-07 – 2026-12-06 (30 days, the last one in progress), across its \
             29 complete days: highest €400 on 2026-11-20, lowest €99 on 2026-11-08."
        );
    }

    #[test]
    fn dates_by_bucket() {
        assert_eq!(when("day", "2026-03-10"), "on 2026-03-10");
        assert_eq!(when("week", "2026-03-09"), "in the week of 2026-03-09");
        assert_eq!(when("month", "2026-03-01"), "in March 2026");
        assert_eq!(when("quarter", "2026-04-01"), "in Q2 2026");
        assert_eq!(when("year", "2026-01-01"), "in 2026");
    }
}
