//! Analysis windows: the span of time an insight talks about, and the calendar presets that
//! make one from "now" and a time zone.
//!
//! A [`Window`] is a half-open span `[start, end)` of instants with a human label. Windows
//! made by [`Window::preset`] also remember their calendar shape (local dates, zone and unit),
//! so [`Window::previous`] and [`Window::same_period_last_year`] can step by calendar units
//! rather than by a fixed number of seconds: the month before March is all of February, and a
//! day that spans a DST change is 23 or 25 hours long. That shape is not serialized; a window
//! read from JSON is a plain span and steps back by its length in seconds (previous) or by 12
//! calendar months in UTC (same period last year).
//!
//! The presets, all in local dates of the zone, weeks starting on Monday, `end` exclusive:
//!
//! | preset | first day | end |
//! | --- | --- | --- |
//! | `today` / `yesterday` | today / yesterday | the day after |
//! | `this_week` / `last_week` | Monday of this / last week | 7 days later |
//! | `this_month` / `last_month` | the 1st of this / last month | 1 month later |
//! | `this_quarter` / `last_quarter` | the 1st of this / last quarter (Jan, Apr, Jul, Oct) | 3 months later |
//! | `this_year` / `last_year` | January 1st of this / last year | 12 months later |
//! | `year_to_date` | January 1st of this year | tomorrow |
//! | `last_N_days` | N − 1 days before today (today included) | tomorrow |
//! | `last_N_weeks` | Monday N − 1 weeks before this week's (this week included) | next Monday |
//! | `last_N_months` | the 1st of the month N − 1 months back (this month included) | the 1st of next month |
//!
//! Labels name one unit as it is (`2026-03-10`, `week of 2026-03-09`, `March 2026`,
//! `Q1 2026`, `2026`) and a span of several with their count (`2026-11-07 – 2026-12-06
//! (30 days)`, `February 2026 – April 2026 (3 months)`); a preset span that includes today
//! adds `, the last one in progress`, since its last unit has not ended (an analysis counts
//! 29 complete days in `last_30_days`).
//!
//! `N` is 1..=366, written without leading zeros. Like the Klip engine's ranges, the current
//! period is whole (it ends in the future). Each boundary is local midnight; a midnight
//! skipped by a DST gap is read with the offset in force before the gap (so that day starts
//! when the gap ends), and a repeated one takes the earlier instant.
//!
//! [`Window::previous`] is the period of the same calendar shape just before: N days / weeks /
//! months earlier (so the previous of `this_quarter` is last quarter). The previous of
//! `year_to_date` is the same span a year earlier, as a year-to-date comparison expects.
//! [`Window::same_period_last_year`] moves month-shaped windows 12 months back, week-shaped
//! ones 52 weeks back (so weeks stay Monday to Sunday), and day-shaped ones start 12 months
//! back and keep their number of days (29 February becomes 28 February).

use crate::klip::Range;
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset};
use chrono::{TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The largest `N` of `last_N_days`, `last_N_weeks` and `last_N_months`.
pub const MAX_PRESET_COUNT: u32 = 366;

/// A half-open span of instants `[start, end)` with a label for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
    /// The calendar shape of a preset window (not serialized); `None` for a plain span.
    #[serde(skip)]
    pub calendar: Option<Calendar>,
    /// Whether the window has no end ahead ("all data": it ends now only because now is
    /// where the data ends); a forecast then looks a fixed few buckets ahead.
    #[serde(skip)]
    pub open_ended: bool,
}

/// A window's calendar shape: local days `[first, end)` in a zone, and the unit they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub tz: Tz,
    /// The first local day.
    pub first: NaiveDate,
    /// The first local day after the window.
    pub end: NaiveDate,
    pub shape: Shape,
}

/// How a calendar window is counted, which decides how it steps back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Days(u32),
    Weeks(u32),
    Months(u32),
    /// January 1st to the end of a day of the same year.
    YearToDate,
}

impl Window {
    /// A plain span (no calendar shape).
    /// A window over all the data up to `now`, with no end ahead (see `open_ended`).
    pub fn all_data(start: DateTime<Utc>, now: DateTime<Utc>) -> Window {
        Window {
            open_ended: true,
            ..Window::new(start, now, "all data")
        }
    }

    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, label: impl Into<String>) -> Window {
        Window {
            start,
            end,
            label: label.into(),
            calendar: None,
            open_ended: false,
        }
    }

    /// The local days `[first, end)` in `tz` as a window with its calendar shape and a label
    /// from its dates. `None` when a date leaves chrono's calendar.
    pub fn local_days(tz: Tz, first: NaiveDate, end: NaiveDate, shape: Shape) -> Option<Window> {
        Some(Window {
            start: local_midnight(tz, first)?,
            end: local_midnight(tz, end)?,
            label: calendar_label(first, end, shape, false)?,
            calendar: Some(Calendar {
                tz,
                first,
                end,
                shape,
            }),
            open_ended: false,
        })
    }

    /// The named preset (see the module docs) around `now` in `tz`; `None` for an unknown
    /// name, an `N` outside 1..=366, or dates outside chrono's calendar.
    pub fn preset(name: &str, now: DateTime<Utc>, tz: Tz) -> Option<Window> {
        Window::of_range(Range::parse(name)?, now, tz)
    }

    /// The range's current period around `now` in `tz` (see the module docs); `None` when a
    /// date leaves chrono's calendar.
    pub fn of_range(range: Range, now: DateTime<Utc>, tz: Tz) -> Option<Window> {
        let today = now.with_timezone(&tz).date_naive();
        let tomorrow = today.checked_add_days(Days::new(1))?;
        let monday =
            today.checked_sub_days(Days::new(u64::from(today.weekday().num_days_from_monday())))?;
        let month = today.with_day(1)?;
        let quarter = NaiveDate::from_ymd_opt(today.year(), (today.month0() / 3) * 3 + 1, 1)?;
        let year = today.with_ordinal(1)?;
        let days_back = |d: NaiveDate, n: u64| d.checked_sub_days(Days::new(n));
        let months_back = |d: NaiveDate, n: u32| d.checked_sub_months(Months::new(n));
        let months_on = |d: NaiveDate, n: u32| d.checked_add_months(Months::new(n));

        let (first, end, shape) = match range {
            Range::Today => (today, tomorrow, Shape::Days(1)),
            Range::Yesterday => (days_back(today, 1)?, today, Shape::Days(1)),
            Range::ThisWeek => (monday, days_on(monday, 7)?, Shape::Weeks(1)),
            Range::LastWeek => (days_back(monday, 7)?, monday, Shape::Weeks(1)),
            Range::ThisMonth => (month, months_on(month, 1)?, Shape::Months(1)),
            Range::LastMonth => (months_back(month, 1)?, month, Shape::Months(1)),
            Range::ThisQuarter => (quarter, months_on(quarter, 3)?, Shape::Months(3)),
            Range::LastQuarter => (months_back(quarter, 3)?, quarter, Shape::Months(3)),
            Range::ThisYear => (year, months_on(year, 12)?, Shape::Months(12)),
            Range::LastYear => (months_back(year, 12)?, year, Shape::Months(12)),
            Range::YearToDate => (year, tomorrow, Shape::YearToDate),
            Range::LastDays(n) => (
                days_back(today, u64::from(n) - 1)?,
                tomorrow,
                Shape::Days(u32::from(n)),
            ),
            Range::LastWeeks(n) => (
                days_back(monday, 7 * (u64::from(n) - 1))?,
                days_on(monday, 7)?,
                Shape::Weeks(u32::from(n)),
            ),
            Range::LastMonths(n) => (
                months_back(month, u32::from(n) - 1)?,
                months_on(month, 1)?,
                Shape::Months(u32::from(n)),
            ),
        };
        let mut window = Window::local_days(tz, first, end, shape)?;
        if first <= today && today < end {
            window.label = calendar_label(first, end, shape, true)?;
        }
        Some(window)
    }

    /// The period of the same shape just before this one (see the module docs). A plain span
    /// gives the span of equal length ending at `start`. `None` only when a date leaves
    /// chrono's calendar.
    pub fn previous(&self) -> Option<Window> {
        let Some(cal) = self.calendar else {
            let length = self.end.signed_duration_since(self.start);
            let start = self.start.checked_sub_signed(length)?;
            return Some(Window::new(
                start,
                self.start,
                format!("the period before {}", self.label),
            ));
        };
        let first = match cal.shape {
            Shape::Days(n) => cal.first.checked_sub_days(Days::new(u64::from(n)))?,
            Shape::Weeks(n) => cal.first.checked_sub_days(Days::new(7 * u64::from(n)))?,
            Shape::Months(n) => cal.first.checked_sub_months(Months::new(n))?,
            Shape::YearToDate => return self.same_period_last_year(),
        };
        Window::local_days(cal.tz, first, cal.first, cal.shape)
    }

    /// The same period a year earlier (see the module docs). A plain span moves both ends
    /// 12 calendar months back in UTC. `None` only when a date leaves chrono's calendar.
    pub fn same_period_last_year(&self) -> Option<Window> {
        let Some(cal) = self.calendar else {
            return Some(Window::new(
                self.start.checked_sub_months(Months::new(12))?,
                self.end.checked_sub_months(Months::new(12))?,
                format!("{}, a year earlier", self.label),
            ));
        };
        let year_back = |d: NaiveDate| d.checked_sub_months(Months::new(12));
        let (first, end) = match cal.shape {
            Shape::Days(n) => {
                let first = year_back(cal.first)?;
                (first, days_on(first, u64::from(n))?)
            }
            Shape::Weeks(n) => {
                let first = cal.first.checked_sub_days(Days::new(364))?;
                (first, days_on(first, 7 * u64::from(n))?)
            }
            Shape::Months(_) => (year_back(cal.first)?, year_back(cal.end)?),
            Shape::YearToDate => {
                let last = cal.end.checked_sub_days(Days::new(1))?;
                (year_back(cal.first)?, days_on(year_back(last)?, 1)?)
            }
        };
        Window::local_days(cal.tz, first, end, cal.shape)
    }

    /// The share of the window behind `now`, `(now − start) / (end − start)` clamped to
    /// `[0, 1]`; 1 for an empty or reversed window.
    pub fn elapsed_fraction(&self, now: DateTime<Utc>) -> f64 {
        let total = self
            .end
            .signed_duration_since(self.start)
            .num_milliseconds();
        if total <= 0 {
            return 1.0;
        }
        let done = now.signed_duration_since(self.start).num_milliseconds();
        (done as f64 / total as f64).clamp(0.0, 1.0)
    }
}

fn days_on(d: NaiveDate, n: u64) -> Option<NaiveDate> {
    d.checked_add_days(Days::new(n))
}

/// A label from a calendar window's dates: `2026-03-10`, `week of 2026-03-09`, `March 2026`,
/// `Q1 2026`, `2026`, or a span of several units with their count: `2026-11-07 – 2026-12-06
/// (30 days)`, `2026-02-16 – 2026-03-15 (4 weeks)`, `February 2026 – April 2026 (3 months)`.
/// A span that includes today (`in_progress`) says that its last unit is not over:
/// `(30 days, the last one in progress)`, so that 29 complete days are not read as a wrong
/// count. A single unit is named as it is, in progress or not.
fn calendar_label(
    first: NaiveDate,
    end: NaiveDate,
    shape: Shape,
    in_progress: bool,
) -> Option<String> {
    let last = end.checked_sub_days(Days::new(1))?;
    let counted = |span: String, n: i64, unit: &str| {
        let plural = if n == 1 { "" } else { "s" };
        let progress = if in_progress {
            ", the last one in progress"
        } else {
            ""
        };
        format!("{span} ({n} {unit}{plural}{progress})")
    };
    let days = || {
        counted(
            format!("{} – {}", first.format("%Y-%m-%d"), last.format("%Y-%m-%d")),
            end.signed_duration_since(first).num_days(),
            "day",
        )
    };
    Some(match shape {
        Shape::Days(1) => first.format("%Y-%m-%d").to_string(),
        Shape::Weeks(1) => format!("week of {}", first.format("%Y-%m-%d")),
        Shape::Weeks(n) => counted(
            format!("{} – {}", first.format("%Y-%m-%d"), last.format("%Y-%m-%d")),
            i64::from(n),
            "week",
        ),
        Shape::Months(1) if first.day() == 1 => first.format("%B %Y").to_string(),
        Shape::Months(3) if first.day() == 1 && first.month0().is_multiple_of(3) => {
            format!("Q{} {}", first.month0() / 3 + 1, first.year())
        }
        Shape::Months(12) if first.day() == 1 && first.month() == 1 => first.year().to_string(),
        Shape::Months(n) if first.day() == 1 => counted(
            format!("{} – {}", first.format("%B %Y"), last.format("%B %Y")),
            i64::from(n),
            "month",
        ),
        _ => days(),
    })
}

/// The instant local midnight of `date` names in `tz`: the earlier one when it repeats, and
/// read with the offset of the day before when a DST gap skips it.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    local_instant(tz, date.and_time(NaiveTime::MIN))
}

/// The instant a local wall-clock time names in `tz` (see [`local_midnight`]).
pub(crate) fn local_instant(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = tz.from_local_datetime(&naive).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    let day_before = naive.checked_sub_days(Days::new(1))?;
    let offset = tz
        .from_local_datetime(&day_before)
        .earliest()?
        .offset()
        .fix();
    naive
        .checked_sub_signed(TimeDelta::seconds(i64::from(offset.local_minus_utc())))
        .map(|utc| Utc.from_utc_datetime(&utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{New_York, Santiago};
    use chrono_tz::UTC;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn span(w: &Window) -> (String, String) {
        (
            w.start.format("%Y-%m-%dT%H:%MZ").to_string(),
            w.end.format("%Y-%m-%dT%H:%MZ").to_string(),
        )
    }

    fn preset(name: &str, now: &str) -> Window {
        Window::preset(name, at(now), New_York).expect(name)
    }

    fn hours(w: &Window) -> i64 {
        w.end.signed_duration_since(w.start).num_hours()
    }

    fn s(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn today_on_the_spring_forward_day_is_23_hours_and_yesterday_24() {
        // 2026-03-08: New York springs forward at 02:00.
        let w = preset("today", "2026-03-08T15:00:00Z");
        assert_eq!(span(&w), s("2026-03-08T05:00Z", "2026-03-09T04:00Z"));
        assert_eq!(hours(&w), 23);
        assert_eq!(w.label, "2026-03-08");
        let prev = w.previous().expect("previous");
        assert_eq!(span(&prev), s("2026-03-07T05:00Z", "2026-03-08T05:00Z"));
        assert_eq!(prev, preset("yesterday", "2026-03-08T15:00:00Z"));
    }

    #[test]
    fn today_on_the_fall_back_day_is_25_hours() {
        let w = preset("today", "2026-11-01T12:00:00Z");
        assert_eq!(span(&w), s("2026-11-01T04:00Z", "2026-11-02T05:00Z"));
        assert_eq!(hours(&w), 25);
    }

    #[test]
    fn today_follows_the_local_date_not_the_utc_date() {
        // 03:30 UTC on March 10 is 23:30 EDT on March 9.
        let w = preset("today", "2026-03-10T03:30:00Z");
        assert_eq!(w.label, "2026-03-09");
        assert_eq!(span(&w), s("2026-03-09T04:00Z", "2026-03-10T04:00Z"));
    }

    #[test]
    fn weeks_start_on_monday_and_span_the_dst_change() {
        // Sunday 2026-03-08: the week is Monday March 2 to Sunday March 8.
        let w = preset("this_week", "2026-03-08T15:00:00Z");
        assert_eq!(span(&w), s("2026-03-02T05:00Z", "2026-03-09T04:00Z"));
        assert_eq!(hours(&w), 167);
        assert_eq!(w.label, "week of 2026-03-02");
        let last = preset("last_week", "2026-03-08T15:00:00Z");
        assert_eq!(span(&last), s("2026-02-23T05:00Z", "2026-03-02T05:00Z"));
        assert_eq!(w.previous().expect("previous"), last);
        // On a Monday, this week starts today.
        let monday = preset("this_week", "2026-03-09T15:00:00Z");
        assert_eq!(span(&monday).0, "2026-03-09T04:00Z");
    }

    #[test]
    fn last_n_days_include_today_and_step_back_by_n_days() {
        let w = preset("last_7_days", "2026-03-10T15:00:00Z");
        assert_eq!(span(&w), s("2026-03-04T05:00Z", "2026-03-11T04:00Z"));
        assert_eq!(hours(&w), 7 * 24 - 1);
        assert_eq!(
            w.label,
            "2026-03-04 – 2026-03-10 (7 days, the last one in progress)"
        );
        let prev = w.previous().expect("previous");
        assert_eq!(span(&prev), s("2026-02-25T05:00Z", "2026-03-04T05:00Z"));
        assert_eq!(prev.label, "2026-02-25 – 2026-03-03 (7 days)");
        let one = preset("last_1_days", "2026-03-10T15:00:00Z");
        assert_eq!(span(&one), span(&preset("today", "2026-03-10T15:00:00Z")));
        let year = preset("last_366_days", "2026-03-10T15:00:00Z");
        assert_eq!(year.calendar.expect("cal").first.to_string(), "2025-03-10");
    }

    #[test]
    fn a_span_with_today_counts_its_days_and_says_the_last_is_in_progress() {
        // 2026-12-06 10:00 in New York: 29 complete days and today's partial one.
        let w = preset("last_30_days", "2026-12-06T15:00:00Z");
        assert_eq!(
            w.label,
            "2026-11-07 – 2026-12-06 (30 days, the last one in progress)"
        );
        assert_eq!(
            w.previous().expect("prev").label,
            "2026-10-08 – 2026-11-06 (30 days)"
        );
        assert_eq!(
            w.same_period_last_year().expect("yoy").label,
            "2025-11-07 – 2025-12-06 (30 days)"
        );
        // Late on December 6 UTC is still December 5 in New York.
        let evening = preset("last_30_days", "2026-12-06T03:00:00Z");
        assert_eq!(
            evening.label,
            "2026-11-06 – 2026-12-05 (30 days, the last one in progress)"
        );
        let weeks = preset("last_4_weeks", "2026-03-11T15:00:00Z");
        assert_eq!(
            weeks.label,
            "2026-02-16 – 2026-03-15 (4 weeks, the last one in progress)"
        );
        assert_eq!(
            weeks.previous().expect("prev").label,
            "2026-01-19 – 2026-02-15 (4 weeks)"
        );
        // One unit is named as it is; a past span has no "in progress".
        assert_eq!(
            preset("this_month", "2026-03-11T15:00:00Z").label,
            "March 2026"
        );
        assert_eq!(preset("today", "2026-03-11T15:00:00Z").label, "2026-03-11");
        assert_eq!(
            preset("last_1_days", "2026-03-11T15:00:00Z").label,
            "2026-03-11"
        );
        assert_eq!(
            preset("last_month", "2026-03-11T15:00:00Z").label,
            "February 2026"
        );
    }

    #[test]
    fn last_n_weeks_and_months_include_the_current_one() {
        let w = preset("last_4_weeks", "2026-03-11T15:00:00Z");
        assert_eq!(span(&w), s("2026-02-16T05:00Z", "2026-03-16T04:00Z"));
        assert_eq!(span(&w.previous().expect("prev")).0, "2026-01-19T05:00Z");
        let m = preset("last_3_months", "2026-04-11T15:00:00Z");
        assert_eq!(span(&m), s("2026-02-01T05:00Z", "2026-05-01T04:00Z"));
        assert_eq!(
            m.label,
            "February 2026 – April 2026 (3 months, the last one in progress)"
        );
        let prev = m.previous().expect("prev");
        assert_eq!(span(&prev), s("2025-11-01T04:00Z", "2026-02-01T05:00Z"));
        assert_eq!(prev.label, "November 2025 – January 2026 (3 months)");
        // Three months that make a quarter are labelled as one.
        let q = preset("last_3_months", "2026-03-11T15:00:00Z");
        assert_eq!(q.label, "Q1 2026");
    }

    #[test]
    fn months_quarters_and_years() {
        let now = "2026-03-11T15:00:00Z";
        let m = preset("this_month", now);
        assert_eq!(span(&m), s("2026-03-01T05:00Z", "2026-04-01T04:00Z"));
        assert_eq!(m.label, "March 2026");
        let lm = preset("last_month", now);
        assert_eq!(lm.label, "February 2026");
        assert_eq!(m.previous().expect("prev"), lm);
        let q = preset("this_quarter", now);
        assert_eq!(q.label, "Q1 2026");
        assert_eq!(span(&q), s("2026-01-01T05:00Z", "2026-04-01T04:00Z"));
        let lq = preset("last_quarter", now);
        assert_eq!(lq.label, "Q4 2025");
        assert_eq!(q.previous().expect("prev"), lq);
        let y = preset("this_year", now);
        assert_eq!(y.label, "2026");
        assert_eq!(span(&y), s("2026-01-01T05:00Z", "2027-01-01T05:00Z"));
        assert_eq!(y.previous().expect("prev"), preset("last_year", now));
        let q4 = preset("this_quarter", "2026-11-20T15:00:00Z");
        assert_eq!(q4.label, "Q4 2026");
    }

    #[test]
    fn year_to_date_and_its_comparison_a_year_earlier() {
        let ytd = preset("year_to_date", "2026-03-11T15:00:00Z");
        assert_eq!(span(&ytd), s("2026-01-01T05:00Z", "2026-03-12T04:00Z"));
        assert_eq!(
            ytd.label,
            "2026-01-01 – 2026-03-11 (70 days, the last one in progress)"
        );
        let prev = ytd.previous().expect("prev");
        assert_eq!(prev, ytd.same_period_last_year().expect("yoy"));
        assert_eq!(span(&prev), s("2025-01-01T05:00Z", "2025-03-12T04:00Z"));
        // A leap day: through Feb 29 2024 → through Feb 28 2023.
        let leap = preset("year_to_date", "2024-02-29T15:00:00Z");
        let before = leap.same_period_last_year().expect("yoy");
        assert_eq!(before.label, "2023-01-01 – 2023-02-28 (59 days)");
    }

    #[test]
    fn same_period_last_year_by_shape() {
        let now = "2024-02-29T15:00:00Z";
        let day = preset("today", now).same_period_last_year().expect("day");
        assert_eq!(day.label, "2023-02-28");
        assert_eq!(span(&day), s("2023-02-28T05:00Z", "2023-03-01T05:00Z"));
        let week = preset("this_week", now).same_period_last_year().expect("w");
        // Week of Monday 2024-02-26 → Monday 2023-02-27 (52 weeks earlier).
        assert_eq!(week.label, "week of 2023-02-27");
        let month = preset("this_month", now)
            .same_period_last_year()
            .expect("m");
        assert_eq!(month.label, "February 2023");
        assert_eq!(span(&month), s("2023-02-01T05:00Z", "2023-03-01T05:00Z"));
        // Summer in New York is EDT: the same month a year back keeps local midnights.
        let july = preset("this_month", "2026-07-04T15:00:00Z");
        let july_before = july.same_period_last_year().expect("m");
        assert_eq!(
            span(&july_before),
            s("2025-07-01T04:00Z", "2025-08-01T04:00Z")
        );
    }

    #[test]
    fn plain_spans_step_by_length_and_by_months() {
        let w = Window::new(
            at("2026-03-01T00:00:00Z"),
            at("2026-03-08T00:00:00Z"),
            "custom",
        );
        let prev = w.previous().expect("prev");
        assert_eq!(span(&prev), s("2026-02-22T00:00Z", "2026-03-01T00:00Z"));
        assert_eq!(prev.label, "the period before custom");
        let yoy = w.same_period_last_year().expect("yoy");
        assert_eq!(span(&yoy), s("2025-03-01T00:00Z", "2025-03-08T00:00Z"));
        let json = serde_json::to_value(&w).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"start": "2026-03-01T00:00:00Z", "end": "2026-03-08T00:00:00Z",
                "label": "custom"})
        );
        let back: Window = serde_json::from_value(json).expect("back");
        assert_eq!(back, w);
    }

    #[test]
    fn a_midnight_skipped_by_dst_starts_the_day_when_the_gap_ends() {
        // Santiago springs forward at 00:00 on 2024-09-08 (-04 → -03).
        let w = Window::preset("today", at("2024-09-08T15:00:00Z"), Santiago).expect("today");
        assert_eq!(span(&w), s("2024-09-08T04:00Z", "2024-09-09T03:00Z"));
        let prev = w.previous().expect("prev");
        assert_eq!(span(&prev), s("2024-09-07T04:00Z", "2024-09-08T04:00Z"));
    }

    #[test]
    fn elapsed_fraction_is_clamped() {
        let w = Window::preset("today", at("2026-01-10T12:00:00Z"), UTC).expect("today");
        assert_eq!(w.elapsed_fraction(at("2026-01-10T12:00:00Z")), 0.5);
        assert_eq!(w.elapsed_fraction(at("2026-01-09T12:00:00Z")), 0.0);
        assert_eq!(w.elapsed_fraction(at("2026-01-12T12:00:00Z")), 1.0);
    }

    #[test]
    fn unknown_names_and_counts_out_of_range() {
        let now = at("2026-03-10T15:00:00Z");
        for bad in [
            "tomorrow",
            "last_0_days",
            "last_367_days",
            "last_07_days",
            "last_7_fortnights",
            "last__days",
            "last_-1_days",
            "last_+7_days",
            "last_7",
            "Today",
        ] {
            assert_eq!(Window::preset(bad, now, New_York), None, "{bad}");
        }
        assert!(Window::preset("last_366_months", now, New_York).is_some());
    }
}
