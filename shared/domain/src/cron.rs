//! Schedule expressions: five-field cron (`minute hour day-of-month month day-of-week`) and
//! the next time one is due in an IANA time zone.
//!
//! Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; months and
//! days of the week also take names (`jan`, `mon`); day of week is 0–7 with 0 and 7 Sunday;
//! day of month takes `L` (the last day of the month). When both day fields are restricted, a
//! day matches either (as in cron).
//!
//! Times are local times of the zone, and daylight saving is handled the way EventBridge
//! Scheduler does: a local time skipped by a spring-forward gap does not run that day, and a
//! local time repeated by a fall-back runs once (at its first occurrence).

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,  // 0..60
    hours: Vec<bool>,    // 0..24
    days: Vec<bool>,     // 1..=31 at index 1
    last_day: bool,      // `L`
    months: Vec<bool>,   // 1..=12 at index 1
    weekdays: Vec<bool>, // 0..7, 0 = Sunday
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, names: &[&str], offset: u32, field: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + offset);
    }
    lower
        .parse()
        .map_err(|_| format!("{field}: '{text}' is not a number"))
}

/// One field as a set of allowed values in `min..=max`.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
    field: &str,
) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{field}: step '{s}' must be a positive number"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, name_offset, field)?,
                value(b, names, name_offset, field)?,
            )
        } else {
            let v = value(range, names, name_offset, field)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if part.contains('/') { max } else { v })
        };
        if from < min || to > max || from > to {
            return Err(format!("{field}: '{part}' must be within {min}-{max}"));
        }
        for v in (from..=to).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

impl Cron {
    /// Parses an expression; the error names the field and what is wrong.
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "must have 5 fields (minute hour day-of-month month day-of-week), not {}",
                fields.len()
            ));
        };
        let (last_day, days) = if day.eq_ignore_ascii_case("l") {
            (true, vec![false; 32])
        } else {
            (false, self::field(day, 1, 31, &[], 0, "day of month")?)
        };
        let mut weekdays = self::field(weekday, 0, 7, &WEEKDAYS, 0, "day of week")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        weekdays.truncate(7);
        Ok(Cron {
            minutes: self::field(minute, 0, 59, &[], 0, "minute")?,
            hours: self::field(hour, 0, 23, &[], 0, "hour")?,
            days,
            last_day,
            months: self::field(month, 1, 12, &MONTHS, 1, "month")?,
            weekdays,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    /// At most how many times it fires on a day it fires: (minutes it fires) × (hours it
    /// fires). Never more: a spring-forward gap skips times, and a time repeated by a
    /// fall-back runs once.
    pub fn runs_per_day(&self) -> u64 {
        let count = |set: &[bool]| set.iter().filter(|on| **on).count() as u64;
        count(&self.minutes) * count(&self.hours)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let last = date
            .succ_opt()
            .is_none_or(|next| next.month() != date.month());
        let by_day = if self.last_day {
            last
        } else {
            self.days[date.day() as usize]
        };
        let by_weekday = self.weekdays[date.weekday().num_days_from_sunday() as usize];
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            (true, false) => by_day,
            (false, true) => by_weekday,
            (false, false) => true,
        }
    }

    /// The first due time strictly after `after`, in `tz`; `None` when there is none within
    /// five years (an expression such as `0 0 31 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        let mut date = local.date();
        let end = date + Duration::days(5 * 366);
        while date <= end {
            if self.months[date.month() as usize] && self.day_matches(date) {
                for hour in (0..24).filter(|h| self.hours[*h as usize]) {
                    for minute in (0..60).filter(|m| self.minutes[*m as usize]) {
                        let Some(time) = NaiveTime::from_hms_opt(hour, minute, 0) else {
                            continue;
                        };
                        let candidate = NaiveDateTime::new(date, time);
                        // Skipped by a spring-forward gap: no run; repeated by a fall-back:
                        // its first occurrence only.
                        let Some(instant) = tz.from_local_datetime(&candidate).earliest() else {
                            continue;
                        };
                        let instant = instant.with_timezone(&Utc);
                        if instant > after {
                            return Some(instant);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// The second a due time is counted in (schedules are minute-precise).
pub fn truncate_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::seconds(t.second() as i64) - Duration::nanoseconds(t.nanosecond() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_and_refuses_with_the_field_named() {
        assert!(Cron::parse("0 9 * * mon-fri").is_ok());
        assert!(Cron::parse("*/15 * L * *").is_ok());
        assert!(Cron::parse("0 9 1,15 jan-jun/2 0,7").is_ok());
        let err = Cron::parse("0 25 * * *").unwrap_err();
        assert!(err.starts_with("hour"), "{err}");
        let err = Cron::parse("0 9 * * funday").unwrap_err();
        assert!(err.starts_with("day of week"), "{err}");
        let err = Cron::parse("0 9 * *").unwrap_err();
        assert!(err.contains("5 fields"), "{err}");
        assert!(Cron::parse("*/0 * * * *")
            .unwrap_err()
            .starts_with("minute"));
    }

    #[test]
    fn runs_a_day_are_minutes_times_hours() {
        let runs = |e: &str| Cron::parse(e).unwrap().runs_per_day();
        assert_eq!(runs("* * * * *"), 1440);
        assert_eq!(runs("*/2 * * * *"), 720);
        assert_eq!(runs("0 9 * * mon-fri"), 1);
        assert_eq!(runs("*/15 8-17 * * *"), 40);
        assert_eq!(runs("0,30 9,12,18 L * *"), 6);
        assert_eq!(runs("5/15 */6 1 jan *"), 16);
    }

    #[test]
    fn next_weekday_morning_in_new_york() {
        let cron = Cron::parse("0 9 * * mon-fri").unwrap();
        // Friday 2026-11-27 10:00 EST → Monday 2026-11-30 09:00 EST = 14:00Z.
        let next = cron
            .next_after(utc("2026-11-27T15:00:00Z"), New_York)
            .unwrap();
        assert_eq!(next, utc("2026-11-30T14:00:00Z"));
    }

    #[test]
    fn last_day_of_the_month() {
        let cron = Cron::parse("30 18 L * *").unwrap();
        let next = cron
            .next_after(utc("2026-02-01T00:00:00Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2026-02-28T18:30:00Z"));
        let next = cron
            .next_after(utc("2028-02-01T00:00:00Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2028-02-29T18:30:00Z"));
    }

    #[test]
    fn a_time_skipped_by_spring_forward_does_not_run_that_day() {
        // 2026-03-08: New York skips 02:00–03:00.
        let cron = Cron::parse("30 2 * * *").unwrap();
        let next = cron
            .next_after(utc("2026-03-08T05:00:00Z"), New_York)
            .unwrap();
        // Not 2026-03-08 02:30 (it does not exist): the next day, 02:30 EDT = 06:30Z.
        assert_eq!(next, utc("2026-03-09T06:30:00Z"));
    }

    #[test]
    fn the_repeated_fall_back_hour_runs_once() {
        // 2026-11-01: New York repeats 01:00–02:00.
        let cron = Cron::parse("30 1 * * *").unwrap();
        let first = cron
            .next_after(utc("2026-11-01T04:00:00Z"), New_York)
            .unwrap();
        assert_eq!(first, utc("2026-11-01T05:30:00Z")); // 01:30 EDT
        let second = cron.next_after(first, New_York).unwrap();
        assert_eq!(second, utc("2026-11-02T06:30:00Z")); // the next day, 01:30 EST
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        let cron = Cron::parse("0 0 31 2 *").unwrap();
        assert_eq!(cron.next_after(utc("2026-01-01T00:00:00Z"), New_York), None);
    }
}
