//! Time: an injectable clock and the New York calendar day that daily limits count in.
//!
//! The day resets at 00:00 Eastern with daylight saving (23- and 25-hour days); the zone data
//! is embedded by `chrono-tz`, because `provided.al2023` may carry none.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use std::sync::Arc;

/// Where "now" comes from, so tests can pin the instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always answers the same instant (tests).
#[derive(Debug)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// A calendar day in America/New_York and the UTC instants it starts and ends at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewYorkDay {
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl NewYorkDay {
    pub fn containing(instant: DateTime<Utc>) -> Self {
        let date = instant.with_timezone(&New_York).date_naive();
        let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
        NewYorkDay {
            date,
            start: midnight(date),
            end: midnight(next),
        }
    }

    /// Whole seconds from `instant` to the next 00:00 Eastern, at least 1.
    pub fn seconds_left(&self, instant: DateTime<Utc>) -> u64 {
        let ms = (self.end - instant).num_milliseconds().max(0) as u64;
        ms.div_ceil(1000).max(1)
    }

    pub fn length_hours(&self) -> i64 {
        (self.end - self.start).num_hours()
    }
}

/// 00:00 in New York on `date`. Midnight always exists there (transitions happen at 02:00).
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    New_York
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

/// RFC 3339 with seconds and `Z`, as every timestamp in the API (see `domain::time`).
pub use domain::time::{parse, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spring_forward_day_is_23_hours() {
        let day = NewYorkDay::containing(at("2026-03-08T12:00:00Z"));
        assert_eq!(day.date.to_string(), "2026-03-08");
        assert_eq!(day.start, at("2026-03-08T05:00:00Z"));
        assert_eq!(day.end, at("2026-03-09T04:00:00Z"));
        assert_eq!(day.length_hours(), 23);
    }

    #[test]
    fn fall_back_day_is_25_hours() {
        let day = NewYorkDay::containing(at("2026-11-01T12:00:00Z"));
        assert_eq!(day.start, at("2026-11-01T04:00:00Z"));
        assert_eq!(day.end, at("2026-11-02T05:00:00Z"));
        assert_eq!(day.length_hours(), 25);
    }

    #[test]
    fn utc_evening_belongs_to_the_eastern_day() {
        // 03:30 UTC on the 9th is still 23:30 on the 8th in New York (EDT, UTC-4).
        let day = NewYorkDay::containing(at("2026-03-09T03:30:00Z"));
        assert_eq!(day.date.to_string(), "2026-03-08");
        assert_eq!(day.seconds_left(at("2026-03-09T03:30:00Z")), 30 * 60);
        // One second before the reset, one second is left; at the reset a new day begins.
        assert_eq!(day.seconds_left(at("2026-03-09T03:59:59Z")), 1);
        assert_eq!(
            NewYorkDay::containing(at("2026-03-09T04:00:00Z"))
                .date
                .to_string(),
            "2026-03-09"
        );
    }

    #[test]
    fn the_repeated_hour_of_november_first_stays_on_that_day() {
        // 01:30 happens twice on 2026-11-01; both instants are in the same day.
        let first = NewYorkDay::containing(at("2026-11-01T05:30:00Z"));
        let second = NewYorkDay::containing(at("2026-11-01T06:30:00Z"));
        assert_eq!(first, second);
        assert_eq!(
            first.seconds_left(at("2026-11-01T05:30:00Z")),
            23 * 3600 + 30 * 60
        );
    }
}
