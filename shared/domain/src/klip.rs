//! The Klip engine: one pure, synchronous computation from a data source's rows and a Klip's
//! `query` and `display` (API.md §6) to the Klip's `value`.
//!
//! Klips, dashboards (`GET {id}`, `POST {id}/refresh`) and reports all call [`evaluate`], so a
//! number means the same thing wherever it is shown. Nothing here does I/O or reads a clock:
//! the caller passes the rows, the company's time zone and "now".
//!
//! The steps, in order:
//! 1. **Static checks.** [`validate`] runs first; a Klip stored before a rule existed gets its
//!    problems as the Klip's `error` instead of a wrong number.
//! 2. **Filters** (all must hold), see [`Filter`]. Rows that fail a filter are never looked at
//!    again, so a bad date or number in a filtered-out row is no error.
//! 3. **Time.** When `time_column` is set, each remaining row's time cell is read (see
//!    [`Query::time_column`]); a cell that is not a time is the Klip's error.
//! 4. **Range.** With a [`Range`], rows fall into the current period, the previous period or
//!    neither; without one, every row is current and there is no previous period.
//! 5. **Aggregate** (see [`Aggregate`]) over the current rows gives `current`, over the previous
//!    rows `previous`; `change = current - previous`, `change_pct = change / |previous| * 100`
//!    (none when `previous` is 0 or none). Nothing is rounded.
//! 6. **Series** per [`TimeBucket`] and **groups** per `group_by`, both over the current rows.
//! 7. **Status** from `display.target`, see [`Display`].
//!
//! Data problems never fail the request: they become [`KlipValue::error`], with every number
//! none, `series` and `groups` empty and `status` none. The first problem in row order wins;
//! rows are numbered from 1 in input order.

use crate::analysis::window::local_instant;
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Cells quoted in error messages are cut to this many characters.
const QUOTED_CELL_CHARS: usize = 40;

/// The largest `query.limit`.
pub const MAX_LIMIT: usize = 1000;

/// What a Klip computes from its data source's rows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The column aggregated. Required unless `aggregate` is `count` (then, without it, rows
    /// are counted).
    pub value: Option<String>,
    /// Default `sum`.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Split `current` into one [`Group`] per distinct text of this column.
    pub group_by: Option<String>,
    /// The column holding each row's time, read as:
    /// - RFC 3339 (`2026-03-08T23:30:00-04:00`, `…Z`);
    /// - `YYYY-MM-DD` (00:00 local time in the Klip's time zone);
    /// - `YYYY-MM-DD HH:MM`, `YYYY-MM-DD HH:MM:SS[.fff]` (a `T` may replace the space), local time;
    /// - Unix seconds, as a JSON number or a numeric string (fractions allowed).
    ///
    /// Local times repeated by a fall-back transition take the earlier instant; local times
    /// skipped by a spring-forward gap are read with the offset in force before the gap
    /// (02:30 on a New York spring-forward day is 03:30 EDT). An empty, null or missing time
    /// cell is an error like any other unreadable one.
    pub time_column: Option<String>,
    /// Fill `series`; needs `time_column`.
    pub time_bucket: Option<TimeBucket>,
    /// Restrict `current` to a calendar period and compute `previous`; needs `time_column`.
    pub range: Option<Range>,
    /// All must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Order of `groups`: `-value` (default: value descending, then key ascending), `value`
    /// (value ascending, then key ascending), `key`, `-key`. Ignored without `group_by`.
    pub sort: Option<String>,
    /// Keep only the first `limit` groups (after sorting), 1..=1000. Ignored without
    /// `group_by`; `series` is never truncated.
    pub limit: Option<usize>,
}

/// How the value column's cells become one number.
///
/// Only numeric cells count: JSON numbers and strings that hold a plain number after trimming
/// (`"1234.5"`, `" 12 "`, `"-3e2"`; not `"1,234.5"`, `"NaN"` or `"inf"`). Null, missing, empty
/// and whitespace-only cells are skipped. Any other cell (text, `true`) in a row being
/// aggregated is the Klip's error, except for `count`, which only asks whether a cell is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Total; 0 over no cells.
    #[default]
    Sum,
    /// Mean; none over no cells.
    Avg,
    /// Smallest; none over no cells.
    Min,
    /// Largest; none over no cells.
    Max,
    /// Rows whose value cell is present, non-null and non-empty (any content), or every row
    /// when `value` is not set; 0 over no rows.
    Count,
    /// The value of the earliest row by `time_column` (input order breaks ties, and decides
    /// alone without a time column); none over no cells.
    First,
    /// The value of the latest row, as `first`; the later row in input order wins ties.
    Last,
}

/// Buckets of `series`, in local dates of the Klip's time zone. Each point's `x` is the
/// bucket's first day as `YYYY-MM-DD`: the day itself, the Monday of the week, or the 1st of
/// the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeBucket {
    Day,
    Week,
    Month,
}

/// A calendar period in the Klip's time zone, relative to "now", and the period before it
/// (see [`crate::analysis::window`] for the exact days): `today`, `yesterday`, `this_week`,
/// `last_week`, `this_month`, `last_month`, `this_quarter`, `last_quarter`, `this_year`,
/// `last_year`, `year_to_date`, and `last_N_days`, `last_N_weeks`, `last_N_months` for N from 1
/// to 366 (`last_7_days`, `last_30_days`, ...). Weeks start on Monday; a `last_N_` period
/// includes the current day, week or month; the previous period is the same number of days,
/// weeks or months just before (for `year_to_date`, the same days a year earlier). Periods are
/// half-open `[start, end)` between local midnights, so one that spans a DST change is an hour
/// shorter or longer. Written as its name in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    Today,
    Yesterday,
    ThisWeek,
    LastWeek,
    ThisMonth,
    LastMonth,
    ThisQuarter,
    LastQuarter,
    ThisYear,
    LastYear,
    YearToDate,
    /// `last_N_days`: today and the N − 1 days before.
    LastDays(u16),
    /// `last_N_weeks`: this week and the N − 1 weeks before.
    LastWeeks(u16),
    /// `last_N_months`: this month and the N − 1 months before.
    LastMonths(u16),
}

/// What a range may be, for error messages.
pub const RANGE_NAMES: &str = "today, yesterday, this_week, last_week, this_month, last_month, \
this_quarter, last_quarter, this_year, last_year, year_to_date, or last_N_days, last_N_weeks, \
last_N_months with N from 1 to 366";

impl Range {
    /// The range a name stands for; `None` for anything else (`last_07_days` included).
    pub fn parse(name: &str) -> Option<Range> {
        Some(match name {
            "today" => Range::Today,
            "yesterday" => Range::Yesterday,
            "this_week" => Range::ThisWeek,
            "last_week" => Range::LastWeek,
            "this_month" => Range::ThisMonth,
            "last_month" => Range::LastMonth,
            "this_quarter" => Range::ThisQuarter,
            "last_quarter" => Range::LastQuarter,
            "this_year" => Range::ThisYear,
            "last_year" => Range::LastYear,
            "year_to_date" => Range::YearToDate,
            _ => {
                let rest = name.strip_prefix("last_")?;
                let (digits, unit) = rest.split_once('_')?;
                if digits.is_empty()
                    || digits.starts_with('0')
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let n: u16 = digits.parse().ok()?;
                if !(1..=crate::analysis::window::MAX_PRESET_COUNT).contains(&u32::from(n)) {
                    return None;
                }
                match unit {
                    "days" => Range::LastDays(n),
                    "weeks" => Range::LastWeeks(n),
                    "months" => Range::LastMonths(n),
                    _ => return None,
                }
            }
        })
    }

    /// The range's name, as [`Range::parse`] reads it.
    pub fn name(self) -> String {
        match self {
            Range::Today => "today".into(),
            Range::Yesterday => "yesterday".into(),
            Range::ThisWeek => "this_week".into(),
            Range::LastWeek => "last_week".into(),
            Range::ThisMonth => "this_month".into(),
            Range::LastMonth => "last_month".into(),
            Range::ThisQuarter => "this_quarter".into(),
            Range::LastQuarter => "last_quarter".into(),
            Range::ThisYear => "this_year".into(),
            Range::LastYear => "last_year".into(),
            Range::YearToDate => "year_to_date".into(),
            Range::LastDays(n) => format!("last_{n}_days"),
            Range::LastWeeks(n) => format!("last_{n}_weeks"),
            Range::LastMonths(n) => format!("last_{n}_months"),
        }
    }

    /// The current period as an analysis window (with its calendar shape, so it knows its
    /// previous period and the same period last year). `None` only when a date leaves
    /// chrono's calendar.
    pub fn window(self, now: DateTime<Utc>, tz: Tz) -> Option<crate::analysis::Window> {
        crate::analysis::Window::of_range(self, now, tz)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Range, D::Error> {
        let name = String::deserialize(d)?;
        Range::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown range '{name}': expected {RANGE_NAMES}"))
        })
    }
}

/// One row condition.
///
/// If both the cell and `value` are numeric (a JSON number or a numeric string, see
/// [`Aggregate`]) they compare as numbers (`"5"` equals `5.0`); otherwise as texts,
/// case-sensitively by Unicode code point (a number's text is its JSON form, a boolean's
/// `true`/`false`, a null filter value's the empty string). A null or missing cell fails every
/// op except `ne`, which it passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    /// The cell equals (as `eq`) any element of the array `value`.
    In,
    /// The cell's text contains `value`'s text, ignoring case.
    Contains,
}

/// How a Klip shows its value.
///
/// `status` compares `current` with `target`. Higher is better (the default): good at or
/// above the target, warning down to 10% below it, bad under that. Lower is better: good at or
/// below the target, warning up to 10% above it, bad over that. The 10% is of `|target|`, so
/// for a negative target the bands keep their direction. No target or no `current`: none.
///
/// `currency` is the ISO 4217 code (three upper-case letters, `EUR`) the numbers of a
/// `currency` Klip are in; absent, the company's (see [`crate::document::company_currency`]).
/// The engine does not format; reports and the published page do (see
/// [`crate::analysis::text::currency_symbol`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Display {
    /// `number`, `currency` or `percent`; for the client, the engine does not format.
    pub format: Option<String>,
    pub target: Option<f64>,
    #[serde(default = "higher_is_better_default")]
    pub higher_is_better: bool,
    #[serde(default)]
    pub currency: Option<String>,
}

fn higher_is_better_default() -> bool {
    true
}

impl Default for Display {
    fn default() -> Self {
        Display {
            format: None,
            target: None,
            higher_is_better: true,
            currency: None,
        }
    }
}

/// A Klip's computed value (API.md §6 `value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlipValue {
    pub current: Option<f64>,
    pub previous: Option<f64>,
    pub change: Option<f64>,
    pub change_pct: Option<f64>,
    pub series: Vec<Point>,
    pub groups: Vec<Group>,
    pub status: Status,
    /// The `now` the value was computed at.
    #[serde(with = "crate::time::utc")]
    pub computed_at: DateTime<Utc>,
    /// Why nothing could be computed (bad data or a query that fails [`validate`]).
    pub error: Option<String>,
    /// The data source's `data_version` the value was computed from (set where it is
    /// stored; absent from values computed before versions existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<u64>,
}

impl KlipValue {
    /// A value that could not be computed, and why.
    pub fn failed(message: String, computed_at: DateTime<Utc>) -> Self {
        KlipValue {
            current: None,
            previous: None,
            change: None,
            change_pct: None,
            series: Vec::new(),
            groups: Vec::new(),
            status: Status::None,
            computed_at,
            error: Some(message),
            data_version: None,
        }
    }
}

/// One point of `series`: a bucket's first local day and the aggregate over the bucket.
/// Buckets whose aggregate is none (e.g. `avg` over only null cells) have no point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: String,
    pub y: f64,
}

/// One entry of `groups`. Groups whose aggregate is none are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Good,
    Warning,
    Bad,
    #[default]
    None,
}

/// The sort orders `query.sort` accepts.
const SORTS: [&str; 4] = ["value", "-value", "key", "-key"];
/// The formats `display.format` accepts.
const FORMATS: [&str; 3] = ["number", "currency", "percent"];

/// Static checks on a Klip's query and display, each problem as `(field path, message)`
/// (`("query.value", "is required unless aggregate is count")`), in field order.
pub fn validate(query: &Query, display: &Display) -> Result<(), Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut problem = |field: String, message: &str| problems.push((field, message.to_owned()));

    match query.value.as_deref() {
        None if query.aggregate != Aggregate::Count => problem(
            "query.value".into(),
            "is required unless aggregate is count",
        ),
        Some("") => problem("query.value".into(), "must not be empty"),
        _ => {}
    }
    if query.group_by.as_deref() == Some("") {
        problem("query.group_by".into(), "must not be empty")
    }
    match query.time_column.as_deref() {
        None if query.time_bucket.is_some() || query.range.is_some() => problem(
            "query.time_column".into(),
            "is required when time_bucket or range is set",
        ),
        Some("") => problem("query.time_column".into(), "must not be empty"),
        _ => {}
    }
    for (i, filter) in query.filters.iter().enumerate() {
        if filter.column.is_empty() {
            problem(format!("query.filters[{i}].column"), "must not be empty");
        }
        if filter.op == FilterOp::In && !filter.value.is_array() {
            problem(
                format!("query.filters[{i}].value"),
                "must be an array when op is in",
            );
        }
    }
    if let Some(sort) = query.sort.as_deref() {
        if !SORTS.contains(&sort) {
            problem(
                "query.sort".into(),
                "must be one of value, -value, key, -key",
            );
        }
    }
    if let Some(limit) = query.limit {
        if !(1..=MAX_LIMIT).contains(&limit) {
            problem("query.limit".into(), "must be between 1 and 1000");
        }
    }
    if let Some(target) = display.target {
        if !target.is_finite() {
            problem("display.target".into(), "must be a finite number");
        }
    }
    if let Some(format) = display.format.as_deref() {
        if !FORMATS.contains(&format) {
            problem(
                "display.format".into(),
                "must be one of number, currency, percent",
            );
        }
    }
    if let Some(code) = display.currency.as_deref() {
        if !crate::analysis::text::is_currency_code(code) {
            problem(
                "display.currency".into(),
                "must be an ISO 4217 currency code: three upper-case letters, e.g. USD, EUR",
            );
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Compute a Klip's value from its data source's `rows`, in time zone `tz`, as of `now`.
/// Never panics and never fails: problems become [`KlipValue::error`] (see the module docs).
pub fn evaluate(
    rows: &[Map<String, Value>],
    query: &Query,
    display: &Display,
    tz: Tz,
    now: DateTime<Utc>,
) -> KlipValue {
    evaluate_with(rows, query, display, tz, now, false).value
}

/// A Klip's value and, for a report's analysis, the same query over the previous period by
/// group and over the same period last year.
#[derive(Debug, Clone, PartialEq)]
pub struct Detailed {
    pub value: KlipValue,
    /// With `range` and `group_by`: every group's aggregate over the previous period (all of
    /// them, in key order: `sort` and `limit` apply to `value.groups` only).
    pub previous_groups: Vec<Group>,
    /// With `range`: the aggregate over the same period a year earlier (see
    /// [`crate::analysis::Window::same_period_last_year`]); none without rows there.
    pub previous_year: Option<f64>,
}

/// [`evaluate`], with the previous period's groups and the same period last year, in the
/// same one pass over the rows.
pub fn evaluate_detailed(
    rows: &[Map<String, Value>],
    query: &Query,
    display: &Display,
    tz: Tz,
    now: DateTime<Utc>,
) -> Detailed {
    evaluate_with(rows, query, display, tz, now, true)
}

fn evaluate_with(
    rows: &[Map<String, Value>],
    query: &Query,
    display: &Display,
    tz: Tz,
    now: DateTime<Utc>,
    detail: bool,
) -> Detailed {
    let mut evaluation = Evaluation::start(query, display, tz, now, detail);
    for row in rows {
        evaluation.feed(row);
    }
    evaluation.finish()
}

/// The engine fed one row at a time, in input order, holding only running aggregates (one
/// per period, time bucket and group), never the rows: [`evaluate`] over rows streamed from
/// storage, in memory that does not grow with the data. Several Klips over one data source
/// each take one `Evaluation` and share one pass over its rows.
///
/// Gives exactly what [`evaluate`] and [`evaluate_detailed`] give over the same rows in the
/// same order (they are this), numbers included: every aggregate adds in input order.
pub struct Evaluation<'q> {
    query: &'q Query,
    display: &'q Display,
    tz: Tz,
    now: DateTime<Utc>,
    detail: bool,
    /// The query fails [`validate`]: the value says so, whatever the rows.
    invalid: Option<String>,
    periods: Option<Periods>,
    /// The range cannot be computed (reported after the column check, as before any row).
    no_periods: Option<String>,
    /// The first row's problem; later rows only count towards the column check.
    row_error: Option<String>,
    rows: usize,
    /// The columns the query names, and whether some row had each.
    named: Vec<(&'q str, bool)>,
    current: Running,
    previous: Running,
    last_year: Running,
    any_last_year: bool,
    buckets: BTreeMap<NaiveDate, Running>,
    groups: BTreeMap<String, Running>,
    previous_groups: BTreeMap<String, Running>,
}

impl<'q> Evaluation<'q> {
    /// An evaluation of `query` in time zone `tz` as of `now`; with `detail`, also the
    /// previous period's groups and the same period last year ([`evaluate_detailed`]).
    pub fn start(
        query: &'q Query,
        display: &'q Display,
        tz: Tz,
        now: DateTime<Utc>,
        detail: bool,
    ) -> Self {
        let invalid = validate(query, display).err().map(|problems| {
            let listed: Vec<String> = problems
                .iter()
                .map(|(field, message)| format!("{field} {message}"))
                .collect();
            format!("invalid klip: {}", listed.join("; "))
        });
        let (periods, no_periods) = match query.range {
            Some(range) => match Periods::of(range, tz, now, detail) {
                Some(periods) => (Some(periods), None),
                None => (
                    None,
                    Some(format!(
                        "the range cannot be computed at {now} in time zone {tz}"
                    )),
                ),
            },
            None => (None, None),
        };
        let mut named: Vec<(&'q str, bool)> = Vec::new();
        for column in query
            .value
            .iter()
            .chain(&query.group_by)
            .chain(&query.time_column)
            .chain(query.filters.iter().map(|f| &f.column))
        {
            if !named.iter().any(|(n, _)| *n == column.as_str()) {
                named.push((column.as_str(), false));
            }
        }
        Evaluation {
            query,
            display,
            tz,
            now,
            detail,
            invalid,
            periods,
            no_periods,
            row_error: None,
            rows: 0,
            named,
            current: Running::default(),
            previous: Running::default(),
            last_year: Running::default(),
            any_last_year: false,
            buckets: BTreeMap::new(),
            groups: BTreeMap::new(),
            previous_groups: BTreeMap::new(),
        }
    }

    /// The next row of the data source.
    pub fn feed(&mut self, row: &Map<String, Value>) {
        let index = self.rows;
        self.rows += 1;
        // Every column the query names must be in the data (when there is data): a misspelt
        // column is a clear per-Klip error rather than a silent 0.
        for (column, seen) in &mut self.named {
            if !*seen && row.contains_key(*column) {
                *seen = true;
            }
        }
        if self.invalid.is_some() || self.no_periods.is_some() || self.row_error.is_some() {
            return;
        }
        if let Err(message) = self.sample(index, row) {
            self.row_error = Some(message);
        }
    }

    fn sample(&mut self, index: usize, row: &Map<String, Value>) -> Result<(), String> {
        let query = self.query;
        if !query.filters.iter().all(|f| f.holds(row.get(&f.column))) {
            return Ok(());
        }
        let time = match query.time_column.as_deref() {
            Some(column) => Some(read_time(row, column, index, self.tz)?),
            None => None,
        };
        let (in_current, in_previous, in_last_year) = match (&self.periods, time) {
            (Some(periods), Some(t)) => (
                periods.current.contains(t),
                periods.previous.contains(t),
                periods.last_year.is_some_and(|y| y.contains(t)),
            ),
            _ => (true, false, false),
        };
        if !in_current && !in_previous && !in_last_year {
            return Ok(());
        }
        let sample = Sample {
            index,
            time,
            value: read_value(row, query, index)?,
        };
        if in_last_year {
            self.any_last_year = true;
            self.last_year.add(&sample);
        }
        let group_key = || {
            query
                .group_by
                .as_deref()
                .map(|column| row.get(column).map(cell_text).unwrap_or_default())
        };
        if in_current {
            self.current.add(&sample);
            if let (Some(bucket), Some(time)) = (query.time_bucket, time) {
                let day = time.with_timezone(&self.tz).date_naive();
                let start = match bucket {
                    TimeBucket::Day => Some(day),
                    TimeBucket::Week => day.checked_sub_days(Days::new(u64::from(
                        day.weekday().num_days_from_monday(),
                    ))),
                    TimeBucket::Month => day.with_day(1),
                };
                self.buckets
                    .entry(start.unwrap_or(day))
                    .or_default()
                    .add(&sample);
            }
            if let Some(key) = group_key() {
                self.groups.entry(key).or_default().add(&sample);
            }
        } else if in_previous {
            self.previous.add(&sample);
            if self.detail && self.periods.is_some() {
                if let Some(key) = group_key() {
                    self.previous_groups.entry(key).or_default().add(&sample);
                }
            }
        }
        Ok(())
    }

    /// How many rows were fed (those a snapshot resumes after).
    pub fn rows_fed(&self) -> u64 {
        self.rows as u64
    }

    /// Where this evaluation stands, to go on from later with only the rows that come after
    /// ([`Evaluation::resume`]); none for a detailed one (a report's, never resumed).
    pub fn snapshot(&self) -> Option<Snapshot> {
        if self.detail {
            return None;
        }
        Some(Snapshot {
            basis: self.basis(),
            rows: self.rows,
            seen: self.named.iter().map(|(_, seen)| *seen).collect(),
            row_error: self.row_error.clone(),
            current: self.current.clone(),
            previous: self.previous.clone(),
            buckets: self.buckets.iter().map(|(d, r)| (*d, r.clone())).collect(),
            groups: self
                .groups
                .iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect(),
        })
    }

    /// An evaluation that goes on from `snapshot`, as if the rows it had seen were fed again:
    /// feeding it the rows after those gives exactly what one pass over all of them gives
    /// (the aggregates add on in input order, first and last compare the same positions).
    /// None when the snapshot was taken for another query, time zone or period (a range
    /// moves with "now"): the rows must all be fed again.
    pub fn resume(
        query: &'q Query,
        display: &'q Display,
        tz: Tz,
        now: DateTime<Utc>,
        snapshot: Snapshot,
    ) -> Option<Self> {
        let mut evaluation = Evaluation::start(query, display, tz, now, false);
        if snapshot.basis != evaluation.basis() || snapshot.seen.len() != evaluation.named.len() {
            return None;
        }
        for ((_, seen), was) in evaluation.named.iter_mut().zip(snapshot.seen) {
            *seen = was;
        }
        evaluation.rows = snapshot.rows;
        evaluation.row_error = snapshot.row_error;
        evaluation.current = snapshot.current;
        evaluation.previous = snapshot.previous;
        evaluation.buckets = snapshot.buckets.into_iter().collect();
        evaluation.groups = snapshot.groups.into_iter().collect();
        Some(evaluation)
    }

    /// What the aggregates depend on besides the rows: the query, the time zone and the
    /// periods (those of a range change with "now").
    fn basis(&self) -> String {
        let spans = self.periods.map(|p| {
            [p.current, p.previous].map(|span| [span.start.to_rfc3339(), span.end.to_rfc3339()])
        });
        serde_json::json!({"query": self.query, "tz": self.tz.name(), "periods": spans}).to_string()
    }

    /// The value over the rows fed, computed at `now`.
    pub fn finish(self) -> Detailed {
        let computed_at = self.now;
        match self.result() {
            Ok(mut found) => {
                found.value.computed_at = computed_at;
                found
            }
            Err(message) => Detailed {
                value: KlipValue::failed(message, computed_at),
                previous_groups: Vec::new(),
                previous_year: None,
            },
        }
    }

    fn result(self) -> Result<Detailed, String> {
        if let Some(message) = self.invalid {
            return Err(message);
        }
        if self.rows > 0 {
            if let Some((column, _)) = self.named.iter().find(|(_, seen)| !seen) {
                return Err(format!("column '{column}' is not in the data"));
            }
        }
        if let Some(message) = self.no_periods.or(self.row_error) {
            return Err(message);
        }
        let how = self.query.aggregate;
        let current_value = self.current.value(how);
        let previous_value = self.periods.as_ref().and_then(|_| self.previous.value(how));
        let change = match (current_value, previous_value) {
            (Some(c), Some(p)) => Some(c - p),
            _ => None,
        };
        let change_pct = match (change, previous_value) {
            (Some(change), Some(p)) if p != 0.0 => Some(change / p.abs() * 100.0),
            _ => None,
        };
        let series = self
            .buckets
            .into_iter()
            .filter_map(|(start, running)| {
                running.value(how).map(|y| Point {
                    x: start.format("%Y-%m-%d").to_string(),
                    y,
                })
            })
            .collect();
        let groups = sorted_groups(by_key(self.groups, how), self.query);
        let previous_groups = by_key(self.previous_groups, how);
        let previous_year = self
            .periods
            .as_ref()
            .and_then(|p| p.last_year)
            .filter(|_| self.any_last_year)
            .and_then(|_| self.last_year.value(how));
        let value = KlipValue {
            current: current_value,
            previous: previous_value,
            change,
            change_pct,
            series,
            groups,
            status: status(current_value, self.display),
            computed_at: DateTime::UNIX_EPOCH,
            error: None,
            data_version: None,
        };
        Ok(Detailed {
            value,
            previous_groups,
            previous_year,
        })
    }
}

/// An [`Evaluation`] part way through its rows ([`Evaluation::snapshot`]): its running
/// aggregates and what they were computed for, to store and resume from. Numbers are kept as
/// their bits, so a resumed evaluation adds on from exactly the same values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    basis: String,
    rows: usize,
    seen: Vec<bool>,
    row_error: Option<String>,
    current: Running,
    previous: Running,
    buckets: Vec<(NaiveDate, Running)>,
    groups: Vec<(String, Running)>,
}

impl Snapshot {
    /// How many rows the evaluation had been fed.
    pub fn rows(&self) -> u64 {
        self.rows as u64
    }
}

/// A row that passed the filters and falls in a period being aggregated.
struct Sample {
    /// 0-based position in the input.
    index: usize,
    time: Option<DateTime<Utc>>,
    /// The value cell as a number; for `count`, 1 when the cell is there. None: skipped.
    value: Option<f64>,
}

/// Order for first/last: by time (when there is a time column), then input order.
type OrderKey = (Option<DateTime<Utc>>, usize);

/// Every aggregate of the samples added so far (those with a value), in input order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "StoredRunning", from = "StoredRunning")]
struct Running {
    count: usize,
    // Adding from +0.0: `Sum for f64` starts at -0.0, which would show as `-0.0`.
    total: f64,
    min: Option<f64>,
    max: Option<f64>,
    first: Option<(OrderKey, f64)>,
    last: Option<(OrderKey, f64)>,
}

impl Running {
    fn add(&mut self, sample: &Sample) {
        let Some(v) = sample.value else {
            return;
        };
        let key = (sample.time, sample.index);
        self.count += 1;
        self.total += v;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        // The earliest wins, the first in input order among equals; the latest, the last.
        if self.first.as_ref().is_none_or(|(k, _)| key < *k) {
            self.first = Some((key, v));
        }
        if self.last.as_ref().is_none_or(|(k, _)| key >= *k) {
            self.last = Some((key, v));
        }
    }

    fn value(&self, how: Aggregate) -> Option<f64> {
        match how {
            Aggregate::Sum => Some(self.total),
            Aggregate::Count => Some(self.count as f64),
            Aggregate::Avg => (self.count > 0).then(|| self.total / self.count as f64),
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::First => self.first.map(|(_, v)| v),
            Aggregate::Last => self.last.map(|(_, v)| v),
        }
    }
}

/// [`Running`] as stored: each number as its bits (exact, `-0.0` included), each time as
/// seconds and nanoseconds.
#[derive(Serialize, Deserialize)]
struct StoredRunning {
    count: usize,
    total: u64,
    min: Option<u64>,
    max: Option<u64>,
    first: Option<StoredOrdered>,
    last: Option<StoredOrdered>,
}

/// A first or last value with its order key: (time as seconds and nanoseconds, row, value bits).
type StoredOrdered = (Option<(i64, u32)>, usize, u64);

fn stored_ordered(((time, index), v): (OrderKey, f64)) -> StoredOrdered {
    (
        time.map(|t| (t.timestamp(), t.timestamp_subsec_nanos())),
        index,
        v.to_bits(),
    )
}

fn from_stored_ordered((time, index, v): StoredOrdered) -> (OrderKey, f64) {
    let time = time.and_then(|(secs, nanos)| DateTime::from_timestamp(secs, nanos));
    ((time, index), f64::from_bits(v))
}

impl From<Running> for StoredRunning {
    fn from(r: Running) -> Self {
        StoredRunning {
            count: r.count,
            total: r.total.to_bits(),
            min: r.min.map(f64::to_bits),
            max: r.max.map(f64::to_bits),
            first: r.first.map(stored_ordered),
            last: r.last.map(stored_ordered),
        }
    }
}

impl From<StoredRunning> for Running {
    fn from(r: StoredRunning) -> Self {
        Running {
            count: r.count,
            total: f64::from_bits(r.total),
            min: r.min.map(f64::from_bits),
            max: r.max.map(f64::from_bits),
            first: r.first.map(from_stored_ordered),
            last: r.last.map(from_stored_ordered),
        }
    }
}

/// Every group's aggregate, in key order (groups whose aggregate is none left out).
fn by_key(groups: BTreeMap<String, Running>, how: Aggregate) -> Vec<Group> {
    groups
        .into_iter()
        .filter_map(|(key, running)| running.value(how).map(|value| Group { key, value }))
        .collect()
}

fn sorted_groups(mut groups: Vec<Group>, query: &Query) -> Vec<Group> {
    let by_value = |a: &Group, b: &Group| a.value.total_cmp(&b.value);
    match query.sort.as_deref() {
        Some("value") => groups.sort_by(|a, b| by_value(a, b).then_with(|| a.key.cmp(&b.key))),
        Some("key") => groups.sort_by(|a, b| a.key.cmp(&b.key)),
        Some("-key") => groups.sort_by(|a, b| b.key.cmp(&a.key)),
        _ => groups.sort_by(|a, b| by_value(b, a).then_with(|| a.key.cmp(&b.key))),
    }
    if let Some(limit) = query.limit {
        groups.truncate(limit);
    }
    groups
}

fn status(current: Option<f64>, display: &Display) -> Status {
    let (Some(current), Some(target)) = (current, display.target) else {
        return Status::None;
    };
    if !target.is_finite() {
        return Status::None;
    }
    // The warning band is 10% of |target| on the bad side of the target.
    let (low, high) = if target >= 0.0 {
        (0.9 * target, 1.1 * target)
    } else {
        (1.1 * target, 0.9 * target)
    };
    if display.higher_is_better {
        if current >= target {
            Status::Good
        } else if current >= low {
            Status::Warning
        } else {
            Status::Bad
        }
    } else if current <= target {
        Status::Good
    } else if current <= high {
        Status::Warning
    } else {
        Status::Bad
    }
}

impl Filter {
    /// Whether a row whose cell in `self.column` is `cell` passes.
    fn holds(&self, cell: Option<&Value>) -> bool {
        let cell = match cell {
            None | Some(Value::Null) => return self.op == FilterOp::Ne,
            Some(cell) => cell,
        };
        let order = || compare(cell, &self.value);
        match self.op {
            FilterOp::Eq => order() == Ordering::Equal,
            FilterOp::Ne => order() != Ordering::Equal,
            FilterOp::Gt => order() == Ordering::Greater,
            FilterOp::Gte => order() != Ordering::Less,
            FilterOp::Lt => order() == Ordering::Less,
            FilterOp::Lte => order() != Ordering::Greater,
            FilterOp::In => match &self.value {
                Value::Array(items) => items
                    .iter()
                    .any(|item| compare(cell, item) == Ordering::Equal),
                // validate() rejects this; read a lone value as a one-element list.
                other => compare(cell, other) == Ordering::Equal,
            },
            FilterOp::Contains => cell_text(cell)
                .to_lowercase()
                .contains(&cell_text(&self.value).to_lowercase()),
        }
    }
}

/// Numbers if both sides are numeric, texts otherwise.
fn compare(cell: &Value, value: &Value) -> Ordering {
    match (numeric(cell), numeric(value)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => cell_text(cell).cmp(&cell_text(value)),
    }
}

/// A cell as a finite number: a JSON number, or a string holding one after trimming.
fn numeric(cell: &Value) -> Option<f64> {
    match cell {
        Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            s.parse::<f64>().ok().filter(|v| v.is_finite())
        }
        _ => None,
    }
}

/// A cell's text: strings as they are, numbers and booleans in their JSON form, null empty.
fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A cell's text for an error message, cut to a readable length.
fn quoted(cell: &Value) -> String {
    let text = cell_text(cell);
    if text.chars().count() > QUOTED_CELL_CHARS {
        let cut: String = text.chars().take(QUOTED_CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn is_blank(cell: &Value) -> bool {
    match cell {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The value cell of row `index` as a sample value (see [`Sample::value`]).
fn read_value(
    row: &Map<String, Value>,
    query: &Query,
    index: usize,
) -> Result<Option<f64>, String> {
    let Some(column) = query.value.as_deref() else {
        // Only `count` may omit the value column: every row counts.
        return Ok(Some(1.0));
    };
    match row.get(column) {
        None => Ok(None),
        Some(cell) if is_blank(cell) => Ok(None),
        Some(_) if query.aggregate == Aggregate::Count => Ok(Some(1.0)),
        Some(cell) => numeric(cell).map(Some).ok_or_else(|| {
            format!(
                "row {}: column '{column}' value '{}' is not a number",
                index + 1,
                quoted(cell)
            )
        }),
    }
}

/// The time cell of row `index` as an instant (formats: [`Query::time_column`]).
fn read_time(
    row: &Map<String, Value>,
    column: &str,
    index: usize,
    tz: Tz,
) -> Result<DateTime<Utc>, String> {
    let row_number = index + 1;
    let cell = match row.get(column) {
        Some(cell) if !is_blank(cell) => cell,
        _ => {
            return Err(format!(
                "row {row_number}: column '{column}' has no value, expected a date or time"
            ))
        }
    };
    parse_time(cell, tz).ok_or_else(|| {
        format!(
            "row {row_number}: column '{column}' value '{}' is not a date or time",
            quoted(cell)
        )
    })
}

fn parse_time(cell: &Value, tz: Tz) -> Option<DateTime<Utc>> {
    if let Some(seconds) = numeric(cell) {
        return from_unix_seconds(seconds);
    }
    let Value::String(text) = cell else {
        return None;
    };
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local_instant(tz, date.and_time(NaiveTime::MIN));
    }
    const LOCAL_FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    LOCAL_FORMATS.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(text, format)
            .ok()
            .and_then(|naive| local_instant(tz, naive))
    })
}

fn from_unix_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    let whole = seconds.floor();
    if !(i64::MIN as f64..=i64::MAX as f64).contains(&whole) {
        return None;
    }
    let nanos = (((seconds - whole) * 1e9).round() as u32).min(999_999_999);
    DateTime::from_timestamp(whole as i64, nanos)
}

/// A half-open span of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Span {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// A range's current and previous periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Periods {
    current: Span,
    previous: Span,
    /// The same period a year earlier, when asked for.
    last_year: Option<Span>,
}

impl Periods {
    /// None only when a date leaves chrono's calendar (years beyond ±262,000).
    fn of(range: Range, tz: Tz, now: DateTime<Utc>, last_year: bool) -> Option<Periods> {
        let current = range.window(now, tz)?;
        let previous = current.previous()?;
        let last_year = match last_year {
            true => current.same_period_last_year().map(|w| Span {
                start: w.start,
                end: w.end,
            }),
            false => None,
        };
        Some(Periods {
            current: Span {
                start: current.start,
                end: current.end,
            },
            previous: Span {
                start: previous.start,
                end: previous.end,
            },
            last_year,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn table(rows: Value) -> Vec<Map<String, Value>> {
        match rows {
            Value::Array(rows) => rows
                .into_iter()
                .map(|row| match row {
                    Value::Object(map) => map,
                    other => panic!("not a row: {other}"),
                })
                .collect(),
            other => panic!("not a table: {other}"),
        }
    }

    fn query(value: Value) -> Query {
        serde_json::from_value(value).unwrap()
    }

    const NOW: &str = "2026-05-15T16:00:00Z"; // 12:00 EDT, a Friday

    fn run(rows: &[Map<String, Value>], q: &Query) -> KlipValue {
        evaluate(rows, q, &Display::default(), New_York, at(NOW))
    }

    /// Five rows in time order b, d, a, e, c (dates deliberately not in input order).
    fn five_rows() -> Vec<Map<String, Value>> {
        table(json!([
            {"day": "2026-05-03", "amount": 10},
            {"day": "2026-05-01", "amount": "4"},
            {"day": "2026-05-05", "amount": 7.5},
            {"day": "2026-05-02", "amount": " 2.5 "},
            {"day": "2026-05-04", "amount": 1},
        ]))
    }

    fn current_of(aggregate: &str, time_column: Option<&str>) -> Option<f64> {
        let q =
            query(json!({"value": "amount", "aggregate": aggregate, "time_column": time_column}));
        let value = run(&five_rows(), &q);
        assert_eq!(value.error, None);
        value.current
    }

    #[test]
    fn every_aggregate_over_five_rows() {
        assert_eq!(current_of("sum", None), Some(25.0));
        assert_eq!(current_of("avg", None), Some(5.0));
        assert_eq!(current_of("min", None), Some(1.0));
        assert_eq!(current_of("max", None), Some(10.0));
        assert_eq!(current_of("count", None), Some(5.0));
        // Without a time column first/last follow input order ...
        assert_eq!(current_of("first", None), Some(10.0));
        assert_eq!(current_of("last", None), Some(1.0));
        // ... with one, time order.
        assert_eq!(current_of("first", Some("day")), Some(4.0));
        assert_eq!(current_of("last", Some("day")), Some(7.5));
    }

    #[test]
    fn first_and_last_break_time_ties_by_input_order() {
        let rows = table(json!([
            {"t": "2026-05-01", "v": 1},
            {"t": "2026-05-01", "v": 2},
            {"t": "2026-04-30", "v": 3},
            {"t": "2026-05-02", "v": 4},
            {"t": "2026-05-02", "v": 5},
        ]));
        let first = query(json!({"value": "v", "aggregate": "first", "time_column": "t"}));
        let last = query(json!({"value": "v", "aggregate": "last", "time_column": "t"}));
        assert_eq!(run(&rows, &first).current, Some(3.0));
        assert_eq!(run(&rows, &last).current, Some(5.0));
    }

    #[test]
    fn defaults_sum_and_no_filters() {
        let q = query(json!({"value": "amount"}));
        assert_eq!(q.aggregate, Aggregate::Sum);
        assert!(q.filters.is_empty());
        let d: Display = serde_json::from_value(json!({})).unwrap();
        assert!(d.higher_is_better);
    }

    #[test]
    fn serde_names_and_unknown_fields() {
        for (name, range) in [
            ("today", Range::Today),
            ("yesterday", Range::Yesterday),
            ("last_7_days", Range::LastDays(7)),
            ("last_30_days", Range::LastDays(30)),
            ("this_month", Range::ThisMonth),
            ("last_month", Range::LastMonth),
            ("this_year", Range::ThisYear),
            ("this_week", Range::ThisWeek),
            ("last_week", Range::LastWeek),
            ("this_quarter", Range::ThisQuarter),
            ("last_quarter", Range::LastQuarter),
            ("last_year", Range::LastYear),
            ("year_to_date", Range::YearToDate),
            ("last_1_days", Range::LastDays(1)),
            ("last_366_days", Range::LastDays(366)),
            ("last_12_weeks", Range::LastWeeks(12)),
            ("last_6_months", Range::LastMonths(6)),
        ] {
            assert_eq!(serde_json::to_value(range).unwrap(), json!(name));
            assert_eq!(serde_json::from_value::<Range>(json!(name)).unwrap(), range);
        }
        for bad in [
            "Today",
            "last_0_days",
            "last_367_days",
            "last_07_days",
            "last_7_years",
            "last__days",
            "last_-1_days",
            "last_7_days_",
            "",
        ] {
            let err = serde_json::from_value::<Range>(json!(bad)).unwrap_err();
            assert!(err.to_string().contains("last_N_days"), "{bad}: {err}");
        }
        assert!(serde_json::from_value::<Query>(json!({"value": "a", "colour": 1})).is_err());
        assert!(serde_json::from_value::<Display>(json!({"colour": 1})).is_err());
        let f: Filter =
            serde_json::from_value(json!({"column": "a", "op": "contains", "value": "x"})).unwrap();
        assert_eq!(f.op, FilterOp::Contains);
        assert_eq!(
            serde_json::to_value(TimeBucket::Week).unwrap(),
            json!("week")
        );
    }

    #[test]
    fn klip_value_round_trips_as_json() {
        let value = run(&five_rows(), &query(json!({"value": "amount"})));
        let text = serde_json::to_value(&value).unwrap();
        assert_eq!(
            text,
            json!({"current": 25.0, "previous": null, "change": null, "change_pct": null,
                   "series": [], "groups": [], "status": "none",
                   "computed_at": "2026-05-15T16:00:00Z", "error": null})
        );
        assert_eq!(serde_json::from_value::<KlipValue>(text).unwrap(), value);
    }

    #[test]
    fn count_without_value_counts_rows_and_with_value_counts_present_cells() {
        let rows = table(json!([
            {"v": 1}, {"v": null}, {}, {"v": ""}, {"v": "abc"}, {"v": false},
        ]));
        assert_eq!(
            run(&rows, &query(json!({"aggregate": "count"}))).current,
            Some(6.0)
        );
        let value = run(&rows, &query(json!({"value": "v", "aggregate": "count"})));
        assert_eq!(value.error, None);
        assert_eq!(value.current, Some(3.0));
    }

    #[test]
    fn empty_data() {
        let rows: Vec<Map<String, Value>> = Vec::new();
        let expect = [
            ("sum", Some(0.0)),
            ("count", Some(0.0)),
            ("avg", None),
            ("min", None),
            ("max", None),
            ("first", None),
            ("last", None),
        ];
        for (aggregate, current) in expect {
            let value = run(&rows, &query(json!({"value": "v", "aggregate": aggregate})));
            assert_eq!(value.current, current, "{aggregate}");
            assert_eq!(value.error, None);
            assert_eq!(value.status, Status::None);
        }
        let sum = run(&rows, &query(json!({"value": "v"}))).current.unwrap();
        assert!(sum.is_sign_positive(), "sum of nothing is +0, not -0");
    }

    #[test]
    fn null_missing_and_blank_cells_are_skipped() {
        let rows = table(json!([
            {"v": 4}, {"v": null}, {"w": 1}, {"v": ""}, {"v": "   "}, {"v": "8"},
        ]));
        let avg = run(&rows, &query(json!({"value": "v", "aggregate": "avg"})));
        assert_eq!(avg.error, None);
        assert_eq!(avg.current, Some(6.0));
        assert_eq!(
            run(&rows, &query(json!({"value": "v", "aggregate": "min"}))).current,
            Some(4.0)
        );
        assert_eq!(
            run(&rows, &query(json!({"value": "v", "aggregate": "last"}))).current,
            Some(8.0)
        );
    }

    #[test]
    fn a_non_numeric_cell_is_the_klips_error_with_its_row_number() {
        let rows = table(json!([
            {"v": 1}, {"v": "2"}, {"v": "1,234.5"}, {"v": "abc"},
        ]));
        let value = run(&rows, &query(json!({"value": "v"})));
        assert_eq!(
            value.error.as_deref(),
            Some("row 3: column 'v' value '1,234.5' is not a number")
        );
        assert_eq!(value.current, None);
        assert_eq!(value.status, Status::None);
        assert!(value.series.is_empty() && value.groups.is_empty());
        assert_eq!(
            crate::time::rfc3339(value.computed_at),
            "2026-05-15T16:00:00Z"
        );

        let booleans = table(json!([{"v": true}]));
        assert_eq!(
            run(&booleans, &query(json!({"value": "v"})))
                .error
                .as_deref(),
            Some("row 1: column 'v' value 'true' is not a number")
        );
        // A bad row that a filter removes is no error.
        let filtered = query(
            json!({"value": "v", "filters": [{"column": "v", "op": "ne", "value": "1,234.5"}]}),
        );
        let value = run(&rows[..3], &filtered);
        assert_eq!(value.error, None);
        assert_eq!(value.current, Some(3.0));
    }

    #[test]
    fn an_unparseable_date_is_the_klips_error() {
        let rows = table(json!([
            {"date": "2026-05-01", "v": 1},
            {"date": "2026-05-02T10:00:00Z", "v": 1},
            {"date": "soon", "v": 1},
        ]));
        let q = query(json!({"value": "v", "time_column": "date"}));
        let value = run(&rows, &q);
        assert_eq!(
            value.error.as_deref(),
            Some("row 3: column 'date' value 'soon' is not a date or time")
        );
        assert_eq!(value.current, None);

        let missing = table(json!([{"date": "2026-05-01", "v": 1}, {"v": 1}]));
        assert_eq!(
            run(&missing, &q).error.as_deref(),
            Some("row 2: column 'date' has no value, expected a date or time")
        );
        // A column in no row at all is a misspelling, named as such.
        let absent = table(json!([{"v": 1}]));
        assert_eq!(
            run(&absent, &q).error.as_deref(),
            Some("column 'date' is not in the data")
        );
        let typo = query(
            json!({"value": "revenue", "filters": [{"column": "v", "op": "gt", "value": 0}]}),
        );
        assert_eq!(
            run(&absent, &typo).error.as_deref(),
            Some("column 'revenue' is not in the data")
        );
        let impossible = table(json!([{"date": "2026-02-30", "v": 1}]));
        assert_eq!(
            run(&impossible, &q).error.as_deref(),
            Some("row 1: column 'date' value '2026-02-30' is not a date or time")
        );
    }

    #[test]
    fn time_cells_in_every_accepted_form() {
        let cases = [
            (json!("2026-03-08T23:30:00-04:00"), "2026-03-09T03:30:00Z"),
            (json!("2026-03-08T12:00:00Z"), "2026-03-08T12:00:00Z"),
            (json!("2026-03-07"), "2026-03-07T05:00:00Z"),
            (json!("2026-03-07 09:15"), "2026-03-07T14:15:00Z"),
            (json!("2026-07-07 09:15:30"), "2026-07-07T13:15:30Z"),
            (json!("2026-07-07T09:15:30.5"), "2026-07-07T13:15:30.500Z"),
            (json!(1_772_971_200), "2026-03-08T12:00:00Z"),
            (json!(" 1772971200 "), "2026-03-08T12:00:00Z"),
            (json!(1_772_971_200.25), "2026-03-08T12:00:00.250Z"),
            // Skipped by spring forward: read with EST, i.e. 03:30 EDT.
            (json!("2026-03-08 02:30"), "2026-03-08T07:30:00Z"),
            // Repeated by fall back: the earlier (EDT) instant.
            (json!("2026-11-01 01:30"), "2026-11-01T05:30:00Z"),
        ];
        for (cell, expected) in cases {
            assert_eq!(parse_time(&cell, New_York), Some(at(expected)), "{cell}");
        }
        for bad in [
            json!("03/08/2026"),
            json!(true),
            json!("2026-03-08 25:00"),
            json!([]),
        ] {
            assert_eq!(parse_time(&bad, New_York), None, "{bad}");
        }
    }

    fn passing(rows: &[Map<String, Value>], column: &str, op: &str, value: Value) -> Vec<usize> {
        let filter: Filter =
            serde_json::from_value(json!({"column": column, "op": op, "value": value})).unwrap();
        rows.iter()
            .enumerate()
            .filter(|(_, row)| filter.holds(row.get(column)))
            .map(|(i, _)| i)
            .collect()
    }

    fn mixed_cells() -> Vec<Map<String, Value>> {
        table(json!([
            {"n": 5},          // 0
            {"n": "5"},        // 1
            {"n": " 12 "},     // 2
            {"n": "1,234.5"},  // 3
            {"n": "abc"},      // 4
            {"n": null},       // 5
            {},                // 6
            {"n": true},       // 7
            {"n": 5.0},        // 8
            {"n": "Abc"},      // 9
        ]))
    }

    #[test]
    fn eq_and_ne_compare_numeric_strings_as_numbers() {
        let rows = mixed_cells();
        assert_eq!(passing(&rows, "n", "eq", json!(5)), vec![0, 1, 8]);
        assert_eq!(passing(&rows, "n", "eq", json!("5.0")), vec![0, 1, 8]);
        assert_eq!(passing(&rows, "n", "eq", json!(12)), vec![2]);
        assert_eq!(passing(&rows, "n", "eq", json!("abc")), vec![4]);
        assert_eq!(passing(&rows, "n", "eq", json!(true)), vec![7]);
        // Null and missing cells pass only `ne`.
        assert_eq!(
            passing(&rows, "n", "ne", json!(5)),
            vec![2, 3, 4, 5, 6, 7, 9]
        );
    }

    #[test]
    fn ordering_ops_are_numeric_when_both_sides_are_numbers_else_textual() {
        let rows = mixed_cells();
        // Numeric cells compare as numbers; text cells ("abc", true, "Abc") compare as texts
        // against "5", and letters sort after digits.
        assert_eq!(passing(&rows, "n", "gt", json!(5)), vec![2, 4, 7, 9]);
        assert_eq!(
            passing(&rows, "n", "gte", json!("5")),
            vec![0, 1, 2, 4, 7, 8, 9]
        );
        // Numerically 5 < 10 even though the text "5" sorts after "10"; "1,234.5" is text,
        // and "1," < "10" because ',' sorts before '0'.
        assert_eq!(passing(&rows, "n", "lt", json!(10)), vec![0, 1, 3, 8]);
        // Against a text every cell compares as text, case-sensitively: digits and spaces sort
        // before "Abc", and "Abc" < "abc" < "true".
        assert_eq!(
            passing(&rows, "n", "lte", json!("Abc")),
            vec![0, 1, 2, 3, 8, 9]
        );
        assert_eq!(passing(&rows, "n", "gt", json!("Abc")), vec![4, 7]);
    }

    #[test]
    fn in_and_contains() {
        let rows = mixed_cells();
        assert_eq!(
            passing(&rows, "n", "in", json!(["abc", 12, "x"])),
            vec![2, 4]
        );
        assert_eq!(passing(&rows, "n", "in", json!([5])), vec![0, 1, 8]);
        assert_eq!(passing(&rows, "n", "in", json!([])), Vec::<usize>::new());
        assert_eq!(passing(&rows, "n", "contains", json!("AB")), vec![4, 9]);
        assert_eq!(passing(&rows, "n", "contains", json!("234")), vec![3]);
        assert_eq!(passing(&rows, "n", "contains", json!(2)), vec![2, 3]);
    }

    #[test]
    fn all_filters_must_hold() {
        let rows = table(json!([
            {"region": "east", "product": "Widget Pro", "amount": 10},
            {"region": "west", "product": "widget", "amount": 20},
            {"region": "east", "product": "gadget", "amount": 40},
            {"region": "east", "product": "WIDGET", "amount": "80"},
        ]));
        let q = query(json!({"value": "amount", "filters": [
            {"column": "region", "op": "eq", "value": "east"},
            {"column": "product", "op": "contains", "value": "widget"},
        ]}));
        assert_eq!(run(&rows, &q).current, Some(90.0));
    }

    /// Rows around NOW (Friday 2026-05-15 12:00 EDT), times local to New York.
    fn dated_rows() -> Vec<Map<String, Value>> {
        table(json!([
            {"at": "2026-05-15 09:00", "v": 10},
            {"at": "2026-05-15 23:59", "v": 5},
            {"at": "2026-05-14 10:00", "v": 8},
            {"at": "2026-05-13 10:00", "v": 4},
            {"at": "2026-05-09 10:00", "v": 2},
            {"at": "2026-05-08 10:00", "v": 1},
            {"at": "2026-05-01 10:00", "v": 100},
            // 02:00 UTC on May 1st, but still April in New York.
            {"at": "2026-05-01T02:00:00Z", "v": 50},
            {"at": "2026-04-10", "v": 30},
            {"at": "2026-03-31 10:00", "v": 7},
            // 04:00 UTC on New Year's Day, but still 2025 in New York.
            {"at": "2025-12-31 23:00", "v": 3},
        ]))
    }

    fn ranged(range: &str) -> KlipValue {
        let q = query(json!({"value": "v", "time_column": "at", "range": range}));
        let value = run(&dated_rows(), &q);
        assert_eq!(value.error, None);
        value
    }

    fn assert_period(range: &str, current: f64, previous: f64, change_pct: Option<f64>) {
        let value = ranged(range);
        assert_eq!(value.current, Some(current), "{range} current");
        assert_eq!(value.previous, Some(previous), "{range} previous");
        assert_eq!(value.change, Some(current - previous), "{range} change");
        assert_eq!(value.change_pct, change_pct, "{range} change_pct");
    }

    #[test]
    fn ranges_of_weeks_quarters_and_the_year_to_date() {
        // Friday 2026-05-15: this week is 11–17 May, last week 4–10 May.
        assert_period("this_week", 27.0, 3.0, Some(800.0));
        // Q2 2026 against Q1 (the 2025-12-31 23:00 row is still 2025 in New York).
        assert_period("this_quarter", 210.0, 7.0, Some(203.0 / 7.0 * 100.0));
        assert_period("last_quarter", 7.0, 3.0, Some(4.0 / 3.0 * 100.0));
        // 1 January – 15 May 2026 against the same days of 2025, which have no rows.
        assert_period("year_to_date", 217.0, 0.0, None);
        // 4–17 May against 20 April – 3 May.
        assert_period("last_2_weeks", 30.0, 150.0, Some(-80.0));
        // March–May 2026 against December 2025 – February 2026.
        assert_period("last_3_months", 217.0, 3.0, Some(214.0 / 3.0 * 100.0));
        assert_period("last_year", 3.0, 0.0, None);
    }

    #[test]
    fn detailed_adds_every_previous_group_and_the_same_period_last_year() {
        let rows = table(json!([
            {"at": "2025-05-10", "v": 40, "g": "a"},
            {"at": "2025-06-10", "v": 1000, "g": "a"},
            {"at": "2026-04-20", "v": 6, "g": "b"},
            {"at": "2026-04-21", "v": 4, "g": "a"},
            {"at": "2026-05-02", "v": 9, "g": "a"},
        ]));
        let q = query(
            json!({"value": "v", "time_column": "at", "range": "this_month",
            "group_by": "g", "limit": 1}),
        );
        let d = evaluate_detailed(&rows, &q, &Display::default(), New_York, at(NOW));
        assert_eq!(d.value, run(&rows, &q));
        assert_eq!((d.value.current, d.value.previous), (Some(9.0), Some(10.0)));
        assert_eq!(d.value.groups.len(), 1);
        let previous: Vec<(&str, f64)> = d
            .previous_groups
            .iter()
            .map(|g| (g.key.as_str(), g.value))
            .collect();
        assert_eq!(previous, vec![("a", 4.0), ("b", 6.0)]);
        assert_eq!(d.previous_year, Some(40.0));

        // No rows a year earlier (15 May 2025): no year-ago value, not a sum of 0.
        let q = query(json!({"value": "v", "time_column": "at", "range": "today"}));
        let d = evaluate_detailed(&rows, &q, &Display::default(), New_York, at(NOW));
        assert_eq!(d.previous_year, None);
        assert!(d.previous_groups.is_empty());
    }

    #[test]
    fn range_today_against_yesterday() {
        // 10 + 5 today; 8 yesterday: +7, +87.5%.
        assert_period("today", 15.0, 8.0, Some(87.5));
    }

    #[test]
    fn range_yesterday_against_the_day_before() {
        assert_period("yesterday", 8.0, 4.0, Some(100.0));
    }

    #[test]
    fn range_last_7_days_against_the_7_before() {
        // May 9..15: 10+5+8+4+2 = 29; May 2..8: 1.
        assert_period("last_7_days", 29.0, 1.0, Some(2800.0));
    }

    #[test]
    fn range_last_30_days_against_the_30_before() {
        // Apr 16..May 15: 29+1+100+50 = 180; Mar 17..Apr 15: 30+7 = 37.
        assert_period("last_30_days", 180.0, 37.0, Some(143.0 / 37.0 * 100.0));
    }

    #[test]
    fn range_this_month_against_last_month() {
        // May: 29+1+100 = 130; April: 50+30 = 80.
        assert_period("this_month", 130.0, 80.0, Some(62.5));
    }

    #[test]
    fn range_last_month_and_this_year() {
        assert_period("last_month", 80.0, 7.0, Some(73.0 / 7.0 * 100.0));
        // 2026: 130+80+7 = 217; 2025: 3.
        assert_period("this_year", 217.0, 3.0, Some(214.0 / 3.0 * 100.0));
    }

    #[test]
    fn change_pct_is_none_when_previous_is_zero_and_uses_its_magnitude() {
        let rows = table(json!([{"at": "2026-05-15", "v": 5}]));
        let q = query(json!({"value": "v", "time_column": "at", "range": "today"}));
        let value = run(&rows, &q);
        assert_eq!(
            (value.previous, value.change, value.change_pct),
            (Some(0.0), Some(5.0), None)
        );

        let rows = table(json!([{"at": "2026-05-15", "v": -5}, {"at": "2026-05-14", "v": -10}]));
        let value = run(&rows, &q);
        assert_eq!((value.change, value.change_pct), (Some(5.0), Some(50.0)));

        // avg over an empty previous period is none, and so are change and change_pct.
        let rows = table(json!([{"at": "2026-05-15", "v": 5}]));
        let avg =
            query(json!({"value": "v", "aggregate": "avg", "time_column": "at", "range": "today"}));
        let value = run(&rows, &avg);
        assert_eq!(
            (value.current, value.previous, value.change),
            (Some(5.0), None, None)
        );
    }

    #[test]
    fn without_a_range_there_is_no_previous() {
        let q = query(json!({"value": "v", "time_column": "at"}));
        let value = run(&dated_rows(), &q);
        assert_eq!(value.current, Some(220.0));
        assert_eq!(
            (value.previous, value.change, value.change_pct),
            (None, None, None)
        );
    }

    #[test]
    fn range_boundaries_are_local_midnights_half_open() {
        let today = Periods::of(Range::Today, New_York, at(NOW), false).unwrap();
        assert_eq!(today.current.start, at("2026-05-15T04:00:00Z"));
        assert_eq!(today.current.end, at("2026-05-16T04:00:00Z"));
        assert!(!today.current.contains(at("2026-05-16T04:00:00Z")));
        assert!(today.previous.contains(at("2026-05-14T04:00:00Z")));
        // The year spans two offsets: EST at both ends.
        let year = Periods::of(Range::ThisYear, New_York, at(NOW), false).unwrap();
        assert_eq!(year.current.start, at("2026-01-01T05:00:00Z"));
        assert_eq!(year.current.end, at("2027-01-01T05:00:00Z"));
        assert_eq!(year.previous.start, at("2025-01-01T05:00:00Z"));
        // Just after midnight UTC on the 1st it is still the last day of the month locally.
        let month = Periods::of(
            Range::ThisMonth,
            New_York,
            at("2026-06-01T02:00:00Z"),
            false,
        )
        .unwrap();
        assert_eq!(month.current.start, at("2026-05-01T04:00:00Z"));
        assert_eq!(month.previous.start, at("2026-04-01T04:00:00Z"));
    }

    /// Daily rows through the DST week in New York, with local noon except on 2026-03-08.
    fn dst_rows() -> Vec<Map<String, Value>> {
        let mut rows = Vec::new();
        for day in 2..=15 {
            if day != 8 {
                rows.push(json!({"at": format!("2026-03-{day:02} 12:00"), "v": day}));
            }
        }
        rows.push(json!({"at": "2026-03-08 00:30", "v": 100})); // EST
        rows.push(json!({"at": "2026-03-08 23:30", "v": 200})); // EDT
        rows.push(json!({"at": "2026-03-09T03:30:00Z", "v": 400})); // 23:30 EDT on the 8th
        rows.push(json!({"at": "2026-03-08T04:30:00Z", "v": 800})); // 23:30 EST on the 7th
        table(Value::Array(rows))
    }

    #[test]
    fn day_buckets_across_the_spring_forward_week() {
        let q = query(json!({"value": "v", "time_column": "at", "time_bucket": "day"}));
        let value = run(&dst_rows(), &q);
        assert_eq!(value.error, None);
        let mut expected: Vec<Point> = (2..=15)
            .map(|day| Point {
                x: format!("2026-03-{day:02}"),
                y: day as f64,
            })
            .collect();
        expected[5].y = 7.0 + 800.0; // March 7
        expected[6].y = 100.0 + 200.0 + 400.0; // March 8, the 23-hour day
        assert_eq!(value.series, expected);
    }

    #[test]
    fn last_7_days_across_the_spring_forward_week() {
        let now = at("2026-03-10T16:00:00Z"); // 12:00 EDT
        let periods = Periods::of(Range::LastDays(7), New_York, now, false).unwrap();
        assert_eq!(periods.current.start, at("2026-03-04T05:00:00Z")); // 00:00 EST
        assert_eq!(periods.current.end, at("2026-03-11T04:00:00Z")); // 00:00 EDT
        assert_eq!(
            periods.current.end - periods.current.start,
            chrono::TimeDelta::hours(167)
        );
        assert_eq!(periods.previous.start, at("2026-02-25T05:00:00Z"));

        let q = query(
            json!({"value": "v", "time_column": "at", "range": "last_7_days", "time_bucket": "day"}),
        );
        let value = evaluate(&dst_rows(), &q, &Display::default(), New_York, now);
        let days: Vec<&str> = value.series.iter().map(|p| p.x.as_str()).collect();
        assert_eq!(
            days,
            [
                "2026-03-04",
                "2026-03-05",
                "2026-03-06",
                "2026-03-07",
                "2026-03-08",
                "2026-03-09",
                "2026-03-10"
            ]
        );
        // 4+5+6+(7+800)+(100+200+400)+9+10; the previous 7 days hold 2 and 3.
        assert_eq!(value.current, Some(1541.0));
        assert_eq!(value.previous, Some(5.0));
    }

    #[test]
    fn week_buckets_start_on_monday() {
        let q = query(
            json!({"value": "v", "time_column": "at", "time_bucket": "week", "aggregate": "max"}),
        );
        let value = run(&dst_rows(), &q);
        // 2026-03-02 and 2026-03-09 are Mondays; Sunday the 15th belongs to the week of the 9th.
        assert_eq!(
            value.series,
            vec![
                Point {
                    x: "2026-03-02".into(),
                    y: 800.0
                },
                Point {
                    x: "2026-03-09".into(),
                    y: 15.0
                },
            ]
        );
        let sunday = table(json!([{"at": "2026-03-01", "v": 1}]));
        assert_eq!(run(&sunday, &q).series[0].x, "2026-02-23");
    }

    #[test]
    fn month_buckets_are_local_and_sorted() {
        let q = query(json!({"value": "v", "time_column": "at", "time_bucket": "month"}));
        let value = run(&dated_rows(), &q);
        assert_eq!(
            value.series,
            vec![
                Point {
                    x: "2025-12-01".into(),
                    y: 3.0
                },
                Point {
                    x: "2026-03-01".into(),
                    y: 7.0
                },
                Point {
                    x: "2026-04-01".into(),
                    y: 80.0
                },
                Point {
                    x: "2026-05-01".into(),
                    y: 130.0
                },
            ]
        );
        // With a range, only the current period's buckets.
        let q = query(
            json!({"value": "v", "time_column": "at", "time_bucket": "month", "range": "last_30_days"}),
        );
        let xs: Vec<String> = run(&dated_rows(), &q)
            .series
            .into_iter()
            .map(|p| p.x)
            .collect();
        assert_eq!(xs, ["2026-04-01", "2026-05-01"]);
    }

    #[test]
    fn buckets_without_a_value_have_no_point() {
        let rows = table(json!([
            {"at": "2026-05-01", "v": null},
            {"at": "2026-05-02", "v": 3},
        ]));
        let q = query(
            json!({"value": "v", "aggregate": "avg", "time_column": "at", "time_bucket": "day"}),
        );
        assert_eq!(
            run(&rows, &q).series,
            vec![Point {
                x: "2026-05-02".into(),
                y: 3.0
            }]
        );
    }

    fn sales() -> Vec<Map<String, Value>> {
        table(json!([
            {"region": "east", "amount": 10},
            {"region": "west", "amount": 30},
            {"region": "north", "amount": 5},
            {"region": "east", "amount": 20},
            {"region": "south", "amount": 30},
            {"amount": 1},
            {"region": null, "amount": 2},
        ]))
    }

    fn group_list(sort: Option<&str>, limit: Option<usize>) -> Vec<(String, f64)> {
        let q =
            query(json!({"value": "amount", "group_by": "region", "sort": sort, "limit": limit}));
        let value = run(&sales(), &q);
        assert_eq!(value.error, None);
        assert_eq!(value.current, Some(98.0));
        value.groups.into_iter().map(|g| (g.key, g.value)).collect()
    }

    fn pairs(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn groups_default_to_value_descending_then_key() {
        assert_eq!(
            group_list(None, None),
            pairs(&[
                ("east", 30.0),
                ("south", 30.0),
                ("west", 30.0),
                ("north", 5.0),
                ("", 3.0)
            ])
        );
        assert_eq!(group_list(Some("-value"), None), group_list(None, None));
    }

    #[test]
    fn groups_sorted_by_value_or_key_and_limited() {
        assert_eq!(
            group_list(Some("value"), Some(3)),
            pairs(&[("", 3.0), ("north", 5.0), ("east", 30.0)])
        );
        assert_eq!(
            group_list(Some("key"), None),
            pairs(&[
                ("", 3.0),
                ("east", 30.0),
                ("north", 5.0),
                ("south", 30.0),
                ("west", 30.0)
            ])
        );
        assert_eq!(
            group_list(Some("-key"), Some(2)),
            pairs(&[("west", 30.0), ("south", 30.0)])
        );
        assert_eq!(group_list(None, Some(1)), pairs(&[("east", 30.0)]));
    }

    #[test]
    fn group_by_and_time_bucket_together_within_the_range() {
        let rows = table(json!([
            {"at": "2026-05-15 08:00", "team": "a", "v": 1},
            {"at": "2026-05-15 09:00", "team": "b", "v": 2},
            {"at": "2026-05-14 09:00", "team": "a", "v": 4},
            {"at": "2026-05-01 09:00", "team": "c", "v": 8},
        ]));
        let q = query(
            json!({"value": "v", "time_column": "at", "range": "last_7_days",
                             "time_bucket": "day", "group_by": "team"}),
        );
        let value = run(&rows, &q);
        assert_eq!(value.current, Some(7.0));
        assert_eq!(
            value.series,
            vec![
                Point {
                    x: "2026-05-14".into(),
                    y: 4.0
                },
                Point {
                    x: "2026-05-15".into(),
                    y: 3.0
                },
            ]
        );
        assert_eq!(
            value.groups,
            vec![
                Group {
                    key: "a".into(),
                    value: 5.0
                },
                Group {
                    key: "b".into(),
                    value: 2.0
                }
            ]
        );
    }

    fn status_of(current: f64, target: f64, higher_is_better: bool) -> Status {
        let display = Display {
            target: Some(target),
            higher_is_better,
            ..Display::default()
        };
        status(Some(current), &display)
    }

    #[test]
    fn status_when_higher_is_better() {
        assert_eq!(status_of(100.0, 100.0, true), Status::Good);
        assert_eq!(status_of(120.0, 100.0, true), Status::Good);
        assert_eq!(status_of(95.0, 100.0, true), Status::Warning);
        assert_eq!(status_of(90.0, 100.0, true), Status::Warning);
        assert_eq!(status_of(89.9, 100.0, true), Status::Bad);
        // Negative target -100: the band runs down to -110.
        assert_eq!(status_of(-100.0, -100.0, true), Status::Good);
        assert_eq!(status_of(-105.0, -100.0, true), Status::Warning);
        assert_eq!(status_of(-111.0, -100.0, true), Status::Bad);
    }

    #[test]
    fn status_when_lower_is_better() {
        assert_eq!(status_of(80.0, 100.0, false), Status::Good);
        assert_eq!(status_of(100.0, 100.0, false), Status::Good);
        assert_eq!(status_of(105.0, 100.0, false), Status::Warning);
        assert_eq!(status_of(110.0, 100.0, false), Status::Warning);
        assert_eq!(status_of(110.1, 100.0, false), Status::Bad);
        // Negative target -100: the band runs up to -90.
        assert_eq!(status_of(-95.0, -100.0, false), Status::Warning);
        assert_eq!(status_of(-89.0, -100.0, false), Status::Bad);
    }

    #[test]
    fn status_is_none_without_target_or_current_and_set_by_evaluate() {
        assert_eq!(status(Some(1.0), &Display::default()), Status::None);
        let display = Display {
            target: Some(20.0),
            ..Display::default()
        };
        assert_eq!(status(None, &display), Status::None);
        let value = evaluate(
            &five_rows(),
            &query(json!({"value": "amount"})),
            &display,
            New_York,
            at(NOW),
        );
        assert_eq!(value.status, Status::Good);
        let value = evaluate(
            &five_rows(),
            &query(json!({"value": "amount", "aggregate": "avg"})),
            &display,
            New_York,
            at(NOW),
        );
        assert_eq!(value.status, Status::Bad);
    }

    #[test]
    fn validate_accepts_a_full_query() {
        let q = query(
            json!({"value": "v", "aggregate": "avg", "group_by": "g", "time_column": "t",
                             "time_bucket": "week", "range": "this_month",
                             "filters": [{"column": "g", "op": "in", "value": ["a"]}],
                             "sort": "-key", "limit": 1000}),
        );
        let display = Display {
            format: Some("currency".into()),
            target: Some(5.0),
            higher_is_better: false,
            currency: Some("SEK".into()),
        };
        assert_eq!(validate(&q, &display), Ok(()));
        assert_eq!(
            validate(&query(json!({"aggregate": "count"})), &Display::default()),
            Ok(())
        );
    }

    #[test]
    fn validate_names_every_bad_field() {
        let q = query(json!({"aggregate": "max", "range": "today",
                             "filters": [{"column": "a", "op": "eq", "value": 1},
                                         {"column": "b", "op": "in", "value": "x"}],
                             "sort": "size", "limit": 0}));
        let display = Display {
            format: Some("money".into()),
            target: Some(f64::NAN),
            higher_is_better: true,
            currency: Some("eur".into()),
        };
        let fields: Vec<String> = validate(&q, &display)
            .unwrap_err()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            [
                "query.value",
                "query.time_column",
                "query.filters[1].value",
                "query.sort",
                "query.limit",
                "display.target",
                "display.format",
                "display.currency",
            ]
        );
        let problems = validate(
            &query(json!({"value": "v", "limit": 1001})),
            &Display::default(),
        );
        assert_eq!(
            problems,
            Err(vec![(
                "query.limit".to_string(),
                "must be between 1 and 1000".to_string()
            )])
        );
        let bucket_only = query(json!({"value": "v", "time_bucket": "day"}));
        assert_eq!(
            validate(&bucket_only, &Display::default()).unwrap_err()[0],
            (
                "query.time_column".to_string(),
                "is required when time_bucket or range is set".to_string()
            )
        );
    }

    #[test]
    fn evaluate_reports_an_invalid_query_as_the_klips_error() {
        let value = run(&five_rows(), &query(json!({"aggregate": "sum"})));
        assert_eq!(
            value.error.as_deref(),
            Some("invalid klip: query.value is required unless aggregate is count")
        );
        assert_eq!(value.current, None);
    }

    #[test]
    fn long_cells_are_cut_in_error_messages() {
        let long = "x".repeat(100);
        let rows = table(json!([{ "v": long }]));
        let message = run(&rows, &query(json!({"value": "v"}))).error.unwrap();
        assert_eq!(
            message,
            format!(
                "row 1: column 'v' value '{}…' is not a number",
                "x".repeat(40)
            )
        );
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use chrono_tz::America::New_York;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Rows over May 2026 and April, with a bad cell at row 17 for the queries that read
    /// `odd`, numbers that do not add exactly in floating point, repeated times.
    fn rows() -> Vec<Map<String, Value>> {
        (0..40)
            .map(|i| {
                let day = 1 + (i * 7) % 28;
                let month = if i % 3 == 0 { 4 } else { 5 };
                let region = ["EMEA", "APAC", "AMER"][(i % 3) as usize];
                let row = json!({
                    "day": format!("2026-{month:02}-{day:02}"),
                    "amount": 0.1 * f64::from(i) + 0.7,
                    "region": region,
                    "odd": if i == 17 { json!("many") } else { json!(i) },
                });
                match row {
                    Value::Object(map) => map,
                    _ => unreachable!(),
                }
            })
            .collect()
    }

    fn queries() -> Vec<Query> {
        [
            json!({"value": "amount"}),
            json!({"value": "amount", "aggregate": "avg", "group_by": "region"}),
            json!({"value": "amount", "aggregate": "first", "time_column": "day"}),
            json!({"value": "amount", "aggregate": "last", "time_column": "day",
                   "time_bucket": "week"}),
            json!({"value": "amount", "aggregate": "min", "time_column": "day",
                   "range": "this_month", "group_by": "region", "sort": "key"}),
            json!({"aggregate": "count", "filters": [{"column": "region", "op": "eq", "value": "APAC"}]}),
            json!({"value": "odd", "aggregate": "max"}),
            json!({"value": "missing"}),
        ]
        .into_iter()
        .map(|q| serde_json::from_value(q).unwrap())
        .collect()
    }

    const NOW: &str = "2026-05-15T16:00:00Z";

    #[test]
    fn resuming_from_a_stored_snapshot_at_any_row_gives_what_one_pass_gives() {
        let rows = rows();
        let display = Display::default();
        let now = at(NOW);
        for query in queries() {
            let whole = evaluate(&rows, &query, &display, New_York, now);
            for split in [0, 1, 16, 17, 18, 39, 40] {
                let mut first = Evaluation::start(&query, &display, New_York, now, false);
                rows[..split].iter().for_each(|row| first.feed(row));
                let snapshot = first.snapshot().unwrap();
                assert_eq!(snapshot.rows(), split as u64);
                // Stored as JSON and read back, as the worker does.
                let stored = serde_json::to_vec(&snapshot).unwrap();
                let snapshot: Snapshot = serde_json::from_slice(&stored).unwrap();
                let mut resumed =
                    Evaluation::resume(&query, &display, New_York, now, snapshot).unwrap();
                assert_eq!(resumed.rows_fed(), split as u64);
                rows[split..].iter().for_each(|row| resumed.feed(row));
                let value = resumed.finish().value;
                assert_eq!(value, whole, "{query:?} split at {split}");
                // Bit for bit, not only equal as numbers.
                assert_eq!(
                    value.current.map(f64::to_bits),
                    whole.current.map(f64::to_bits)
                );
            }
        }
    }

    #[test]
    fn a_snapshot_resumes_only_the_same_query_in_the_same_zone_and_period() {
        let display = Display::default();
        let rows = rows();
        let ranged: Query = serde_json::from_value(
            json!({"value": "amount", "time_column": "day", "range": "today"}),
        )
        .unwrap();
        let mut evaluation = Evaluation::start(&ranged, &display, New_York, at(NOW), false);
        rows.iter().for_each(|row| evaluation.feed(row));
        let snapshot = evaluation.snapshot().unwrap();
        let resume = |query: &Query, tz: Tz, now: &str| {
            Evaluation::resume(query, &display, tz, at(now), snapshot.clone()).is_some()
        };
        assert!(
            resume(&ranged, New_York, "2026-05-15T23:59:00Z"),
            "same local day"
        );
        assert!(
            !resume(&ranged, New_York, "2026-05-16T04:00:00Z"),
            "the next local day"
        );
        assert!(!resume(&ranged, chrono_tz::UTC, NOW), "another time zone");
        let other: Query = serde_json::from_value(
            json!({"value": "amount", "time_column": "day", "range": "yesterday"}),
        )
        .unwrap();
        assert!(!resume(&other, New_York, NOW), "another query");
        // A report's detailed evaluation is never snapshot.
        let detailed = Evaluation::start(&ranged, &display, New_York, at(NOW), true);
        assert!(detailed.snapshot().is_none());
    }
}
