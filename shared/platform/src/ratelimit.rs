//! Per-company rate limits (API.md §3) on DynamoDB atomic counters.
//!
//! Each authenticated request adds 1, in parallel with the credential checks, to its
//! company's counter item for the current New York day (`D#<date>`), which counts both the
//! day and the current Unix second in one conditional `UpdateItem`. The limit is compared with the counts that come back, so no
//! read precedes the write. A request over either limit is refused and its day increment
//! given back, so refused requests never use daily quota; admission never over-admits because
//! a request is only admitted when its own increment is within the limit.
//!
//! Once a company is at its per-second limit (this instance admitted the request that reached
//! it) or over it, this instance refuses the rest of that second from memory (a failed or
//! refused write still costs a write, and one item takes at most 1,000 writes/s). And it
//! never has more of a company's requests counting at once than the company's per-second
//! limit: a request beyond them waits for those to settle (see [`RateLimiter::enter`]), so
//! a burst over the limit costs the limit's writes, not one per request.

use crate::error::ApiError;
use crate::store::{keys, Key, Store, WriteError};
use crate::time::NewYorkDay;
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// The three `X-RateLimit-*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset: i64,
}

impl RateHeaders {
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset));
    }
}

/// What the counters said for one request.
#[derive(Clone, Copy, Debug)]
pub struct Counted {
    pub second: i64,
    pub in_second: i64,
    pub day: NewYorkDay,
    pub today: i64,
}

/// `GET /usage`, as of the request that asks.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Usage {
    pub date: String,
    pub per_second_limit: u64,
    pub daily_limit: u64,
    pub used_today: u64,
    pub remaining_today: u64,
    #[serde(with = "domain::time::utc")]
    pub reset_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, PartialEq)]
pub enum Decision {
    Admit(RateHeaders),
    /// Refused; the day increment must be given back.
    Refuse {
        error: ApiError,
        headers: RateHeaders,
        per_second: bool,
    },
}

/// The admission rule, pure so the day boundaries can be unit-tested with any instant.
pub fn decide(
    counted: &Counted,
    per_second_limit: u64,
    daily_limit: u64,
    now: DateTime<Utc>,
) -> Decision {
    let reset = counted.day.end.timestamp();
    let today = counted.today.max(0) as u64;
    if counted.in_second > per_second_limit as i64 {
        let headers = RateHeaders {
            limit: daily_limit,
            remaining: daily_limit.saturating_sub(today.saturating_sub(1)),
            reset,
        };
        return Decision::Refuse {
            error: ApiError::RateLimited {
                message: format!("rate limit exceeded: at most {per_second_limit} requests per second for this company"),
                retry_after: 1,
            },
            headers,
            per_second: true,
        };
    }
    if today > daily_limit {
        let headers = RateHeaders {
            limit: daily_limit,
            remaining: 0,
            reset,
        };
        return Decision::Refuse {
            error: ApiError::RateLimited {
                message: format!(
                    "daily limit exceeded: at most {daily_limit} requests per day for this company; it resets at 00:00 America/New_York"
                ),
                retry_after: counted.day.seconds_left(now),
            },
            headers,
            per_second: false,
        };
    }
    Decision::Admit(RateHeaders {
        limit: daily_limit,
        remaining: daily_limit - today,
        reset,
    })
}

impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.to_string() == other.to_string()
    }
}

/// The longest a request waits in [`RateLimiter::enter`] before it is counted anyway: longer
/// than the requests it waits for take unless the database is slow, when it need not wait.
const ENTRY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct RateLimiter {
    /// company → the Unix second it is refused until the end of.
    blocked: Mutex<HashMap<String, (i64, RateHeaders)>>,
    /// company → the last second this instance counted it in (a guess, checked by DynamoDB).
    seconds: Mutex<HashMap<String, i64>>,
    /// company → its requests counting in this instance now (see [`RateLimiter::enter`]).
    counting: Mutex<HashMap<String, Counting>>,
    /// Woken whenever an entered request settles.
    settled: tokio::sync::Notify,
    /// company → the day its counter item was last seen on and the keys whose uses it holds
    /// (see [`RateLimiter::key_fits`]).
    day_keys: Mutex<HashMap<String, (chrono::NaiveDate, Vec<String>)>>,
    /// company → the last second this instance found another instance had counted first (a
    /// new second's guess refused): while that is recent, a new second's first count sends
    /// both guesses at once (see [`RateLimiter::count`]).
    shared: Mutex<HashMap<String, i64>>,
}

/// How long (seconds) after another instance was seen counting a company first this instance
/// keeps sending both guesses for a new second of it.
const SHARED_FOR: i64 = 60;

/// A company's requests counting in one second, as this instance sees them.
#[derive(Debug, Default)]
struct Counting {
    second: i64,
    /// Entered and not yet settled.
    in_flight: u64,
    /// The highest count of the second an admitted request came back with.
    highest: i64,
}

/// A request entered to be counted ([`RateLimiter::enter`]); dropping it (once the request
/// is settled) makes room for the next.
#[derive(Debug)]
pub struct Entry<'a> {
    limiter: &'a RateLimiter,
    company: String,
    second: i64,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Ok(mut counting) = self.limiter.counting.lock() {
            if let Some(c) = counting.get_mut(&self.company) {
                if c.second == self.second {
                    c.in_flight = c.in_flight.saturating_sub(1);
                }
            }
        }
        self.limiter.settled.notify_waiters();
    }
}

impl RateLimiter {
    /// A refusal from memory when this instance already saw the company over its per-second
    /// limit in this very second.
    pub fn refused_from_memory(
        &self,
        company: &str,
        now: DateTime<Utc>,
    ) -> Option<(ApiError, RateHeaders)> {
        let blocked = self.blocked.lock().ok()?;
        let (second, headers) = blocked.get(company)?;
        (*second == now.timestamp()).then(|| {
            (
                ApiError::RateLimited {
                    message: "rate limit exceeded: too many requests per second for this company"
                        .into(),
                    retry_after: 1,
                },
                *headers,
            )
        })
    }

    /// Enters a request of `company` to be counted in `now`'s second. While the requests of
    /// the company counting now, with the highest count an admitted one came back with, make
    /// its per-second limit, this waits for one of them to settle (at most [`ENTRY_WAIT`]): if
    /// they were admitted and reached the limit, [`Self::refused_from_memory`] refuses this
    /// one without a write. Only requests whose caller this instance verified before enter
    /// (see the admission), so nobody delays a company by sending requests in its name.
    pub async fn enter(&self, company: &str, now: DateTime<Utc>, limit: u64) -> Entry<'_> {
        let second = now.timestamp();
        let deadline = tokio::time::Instant::now() + ENTRY_WAIT;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let give_up = tokio::time::Instant::now() >= deadline;
            let entered = match self.counting.lock() {
                Ok(mut counting) => {
                    if counting.len() >= 10_000 {
                        counting.retain(|_, c| c.in_flight > 0 && c.second >= second);
                    }
                    let c = counting.entry(company.to_owned()).or_default();
                    if c.second < second {
                        *c = Counting {
                            second,
                            ..Counting::default()
                        };
                    }
                    if c.second > second {
                        // A request of a second already over here: nothing to wait for
                        // (its entry is not counted: it leaves the later second alone).
                        return Entry {
                            limiter: self,
                            company: company.to_owned(),
                            second,
                        };
                    }
                    let room = (c.in_flight as i64).saturating_add(c.highest) < limit.max(1) as i64;
                    let entered =
                        room || give_up || self.refused_from_memory(company, now).is_some();
                    if entered {
                        c.in_flight += 1;
                    }
                    entered
                }
                Err(_) => true,
            };
            if entered {
                return Entry {
                    limiter: self,
                    company: company.to_owned(),
                    second,
                };
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Whether a use of `key_id` may be counted on `company`'s day counter item: the key is
    /// already on it, or (as this instance last saw the item today) it holds fewer than
    /// [`crate::store::counters::KEYS_PER_DAY_ITEM`] keys. Past that, every further key
    /// would grow the item over one write unit for all of the company's requests that day,
    /// so its uses go to its own item.
    pub fn key_fits(&self, company: &str, key_id: &str, now: DateTime<Utc>) -> bool {
        let today = NewYorkDay::containing(now).date;
        let Ok(day_keys) = self.day_keys.lock() else {
            return true;
        };
        match day_keys.get(company) {
            Some((day, keys)) if *day == today => {
                keys.len() < crate::store::counters::KEYS_PER_DAY_ITEM
                    || keys.iter().any(|k| k == key_id)
            }
            _ => true,
        }
    }

    fn remember_day_keys(&self, company: &str, day: chrono::NaiveDate, keys: Vec<String>) {
        if let Ok(mut day_keys) = self.day_keys.lock() {
            if day_keys.len() >= 10_000 {
                day_keys.clear();
            }
            day_keys.insert(company.to_owned(), (day, keys));
        }
    }

    /// Notes the count of the second an admitted request came back with.
    fn observe(&self, company: &str, counted: &Counted) {
        if let Ok(mut counting) = self.counting.lock() {
            if let Some(c) = counting.get_mut(company) {
                if c.second == counted.second {
                    c.highest = c.highest.max(counted.in_second);
                }
            }
        }
    }

    /// Adds this request to the company's day counter item, which also counts the current
    /// second: `n` (requests today), `s` (the second being counted) and `c` (requests in
    /// it). One conditional `UpdateItem` does both: it adds to `c` when `s` is this second,
    /// or starts the second over when `s` is older. This instance guesses which from the
    /// last second it saw for the company, and the failed condition's old item corrects a
    /// wrong guess.
    ///
    /// With `key_use`, the same update counts a use of that API key (see
    /// [`crate::store::counters::uses_attribute`]).
    pub async fn count(
        &self,
        store: &Store,
        company: &str,
        now: DateTime<Utc>,
        key_use: Option<&str>,
    ) -> Result<Counted, ApiError> {
        let second = now.timestamp();
        let day = NewYorkDay::containing(now);
        let key = keys::rate_day(company, &day.date.to_string());
        let ttl = day.end.timestamp() + 3 * 86_400;
        let mut counted_second = second;
        let mut same_second = self.last_second(company) == Some(second);
        let key_use = key_use.map(|id| (id, now));
        let counters = store.rate_counters();
        let counted = |counted_second, counts: crate::store::counters::Counts| {
            self.remember_second(company, counted_second);
            self.remember_day_keys(company, day.date, counts.keys);
            Counted {
                second: counted_second,
                in_second: counts.in_second,
                day,
                today: counts.today,
            }
        };
        if self.last_second(company).is_none() || (!same_second && self.shared(company, second)) {
            // This instance has not counted the company yet (a new instance's first request),
            // or it is a new second of a company other instances count too, so it cannot tell
            // whether the item already counts this second: both guesses go at once, and at
            // most one holds (see `RateCounters::add`). One round trip where a wrong guess
            // would cost two; the refused one costs a write unit, once per company and
            // instance, and then once a second while other instances count it first.
            match self
                .both_guesses(&key, company, second, ttl, key_use, store)
                .await?
            {
                Ok(counts) => return Ok(counted(second, counts)),
                // Another instance (whose clock may run ahead) already counts a later second.
                Err(Some(later)) => {
                    counted_second = later;
                    same_second = true;
                }
                Err(None) => {}
            }
        }
        for _ in 0..3 {
            match counters
                .add(&key, counted_second, same_second, ttl, key_use, None)
                .await
            {
                Ok(counts) => return Ok(counted(counted_second, counts)),
                // Another instance (whose clock may run ahead) already counts this second or
                // a later one: count this request in it.
                Err(WriteError::Refused(Some(s))) if s >= second => {
                    if !same_second {
                        self.remember_shared(company, second);
                    }
                    counted_second = s;
                    same_second = true;
                }
                Err(WriteError::Refused(_)) => {
                    counted_second = second;
                    same_second = false;
                }
                Err(WriteError::Failed(e)) => return Err(e.into()),
            }
        }
        Err(ApiError::Unavailable(
            "the rate counter is contended; retry shortly".into(),
        ))
    }

    /// Both guesses for `second` at once (see [`RateLimiter::count`]), with one marker so
    /// that at most one holds: the counts when one held (noting another instance counted
    /// the second first when it was the "this second" guess), or, when both were refused,
    /// the later second the item counts, if any.
    async fn both_guesses(
        &self,
        key: &Key,
        company: &str,
        second: i64,
        ttl: i64,
        key_use: Option<(&str, DateTime<Utc>)>,
        store: &Store,
    ) -> Result<Result<crate::store::counters::Counts, Option<i64>>, ApiError> {
        let counters = store.rate_counters();
        let marker = domain::ids::new_id();
        let (adds, starts) = tokio::join!(
            counters.add(key, second, true, ttl, key_use, Some(&marker)),
            counters.add(key, second, false, ttl, key_use, Some(&marker)),
        );
        match (adds, starts) {
            (Ok(counts), _) => {
                self.remember_shared(company, second);
                Ok(Ok(counts))
            }
            (_, Ok(counts)) => Ok(Ok(counts)),
            (Err(WriteError::Failed(e)), _) | (_, Err(WriteError::Failed(e))) => Err(e.into()),
            (Err(WriteError::Refused(a)), Err(WriteError::Refused(b))) => {
                Ok(Err(a.max(b).filter(|s| *s >= second)))
            }
        }
    }

    /// Refuses the rest of `second` for `company` from memory.
    fn block(&self, company: &str, second: i64, headers: RateHeaders) {
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, (s, _)| *s >= second);
            blocked.insert(company.to_owned(), (second, headers));
        }
    }

    /// For an instance that has not counted `company` yet: the company's day item, to read
    /// alongside a verification that comes before the count anyway (in its very
    /// `BatchGetItem`, see [`crate::auth::verify::verify_reading`]) and give to
    /// [`Self::learn_second`], so that the count after it guesses the second right: one
    /// write, not both guesses at once (see [`RateLimiter::count`]).
    pub fn second_to_learn(&self, company: &str, now: DateTime<Utc>) -> Option<Key> {
        if self.last_second(company).is_some() {
            return None;
        }
        let day = NewYorkDay::containing(now);
        Some(keys::rate_day(company, &day.date.to_string()))
    }

    /// Learns which second `company`'s day item counts from the item as read (`None`: no
    /// item; nothing is learnt when the read failed, and the count then guesses both).
    pub fn learn_second(&self, company: &str, day_item: Option<&crate::store::Item>) {
        // No item, or one that counts no second yet: any second is a new one.
        let second = day_item
            .and_then(|item| crate::store::number(item, "s"))
            .unwrap_or(0);
        if self.last_second(company).is_none() {
            self.remember_second(company, second);
        }
    }

    /// Whether another instance counted `company` first in a second less than
    /// [`SHARED_FOR`] before `second`.
    fn shared(&self, company: &str, second: i64) -> bool {
        let shared = self.shared.lock().ok();
        shared
            .and_then(|s| s.get(company).copied())
            .is_some_and(|seen| second - seen < SHARED_FOR)
    }

    fn remember_shared(&self, company: &str, second: i64) {
        if let Ok(mut shared) = self.shared.lock() {
            if shared.len() >= 10_000 {
                shared.clear();
            }
            shared.insert(company.to_owned(), second);
        }
    }

    fn last_second(&self, company: &str) -> Option<i64> {
        self.seconds.lock().ok()?.get(company).copied()
    }

    fn remember_second(&self, company: &str, second: i64) {
        if let Ok(mut seconds) = self.seconds.lock() {
            if seconds.len() >= 10_000 {
                seconds.clear();
            }
            seconds.insert(company.to_owned(), second);
        }
    }

    /// Gives back the day increment of a request that was refused or did not authenticate.
    pub async fn refund(&self, store: &Store, company: &str, counted: &Counted) {
        self.give_back_day(store, company, counted, None).await
    }

    /// Gives back the day increment, and with `key_use` that key's use.
    async fn give_back_day(
        &self,
        store: &Store,
        company: &str,
        counted: &Counted,
        key_use: Option<&str>,
    ) {
        let key = keys::rate_day(company, &counted.day.date.to_string());
        if let Err(e) = store
            .rate_counters()
            .give_back_day(&key, counted.day.end.timestamp() + 3 * 86_400, key_use)
            .await
        {
            tracing::warn!(company, error = %e, "could not give back a day increment");
        }
    }

    /// Gives back both increments of a request that did not authenticate: it must not use the
    /// company's quota, nor its per-second allowance (or anyone could block a company by
    /// sending bad credentials in its name). The second's count is only given back while
    /// that second is still the one counted. A key's use counted with it (`key_use`) is
    /// given back too: a refused key was not used.
    pub async fn refund_unauthenticated(
        &self,
        store: &Store,
        company: &str,
        counted: &Counted,
        key_use: Option<&str>,
    ) {
        let key = keys::rate_day(company, &counted.day.date.to_string());
        match store
            .rate_counters()
            .give_back_both(&key, counted.second, key_use)
            .await
        {
            Ok(true) => {}
            Ok(false) => self.give_back_day(store, company, counted, key_use).await,
            Err(e) => tracing::warn!(company, error = %e, "could not give back increments"),
        }
    }

    /// Applies the decision: remembers a per-second refusal and refunds refused requests
    /// (with `key_use`, the key's use too: a key's uses are the requests it had admitted).
    pub async fn settle(
        &self,
        store: &Store,
        company: &str,
        counted: &Counted,
        limits: Limits,
        now: DateTime<Utc>,
        key_use: Option<&str>,
    ) -> Result<RateHeaders, (ApiError, RateHeaders)> {
        let per_second_limit = limits.per_second;
        match decide(counted, per_second_limit, limits.daily, now) {
            Decision::Admit(headers) => {
                self.observe(company, counted);
                // This request reached the limit: the next one in this second is over it.
                if counted.in_second >= per_second_limit as i64 {
                    self.block(company, counted.second, headers);
                }
                Ok(headers)
            }
            Decision::Refuse {
                error,
                headers,
                per_second,
            } => {
                if per_second {
                    self.block(company, counted.second, headers);
                }
                self.give_back_day(store, company, counted, key_use).await;
                Err((error, headers))
            }
        }
    }
}

/// A company's limits: requests per second and per New York day.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_second: u64,
    pub daily: u64,
}

impl Usage {
    pub fn new(counted: &Counted, per_second_limit: u64, daily_limit: u64) -> Self {
        let used = counted.today.max(0) as u64;
        Usage {
            date: counted.day.date.to_string(),
            per_second_limit,
            daily_limit,
            used_today: used,
            remaining_today: daily_limit.saturating_sub(used),
            reset_at: counted.day.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn counted(now: DateTime<Utc>, in_second: i64, today: i64) -> Counted {
        Counted {
            second: now.timestamp(),
            in_second,
            day: NewYorkDay::containing(now),
            today,
        }
    }

    #[test]
    fn admits_up_to_the_limits() {
        let now = at("2026-11-23T15:00:00Z");
        match decide(&counted(now, 5, 10), 5, 10, now) {
            Decision::Admit(h) => assert_eq!((h.limit, h.remaining), (10, 0)),
            other => panic!("{other:?}"),
        }
        match decide(&counted(now, 6, 3), 5, 10, now) {
            Decision::Refuse {
                per_second,
                error:
                    ApiError::RateLimited {
                        retry_after,
                        message,
                    },
                ..
            } => {
                assert!(per_second);
                assert_eq!(retry_after, 1);
                assert!(message.contains("per second"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn daily_refusal_waits_for_new_york_midnight_on_the_short_day() {
        // 2026-03-08 is 23 hours long; at 22:00 EDT (02:00Z on the 9th) two hours remain.
        let now = at("2026-03-09T02:00:00Z");
        match decide(&counted(now, 1, 11), 5, 10, now) {
            Decision::Refuse {
                per_second: false,
                error:
                    ApiError::RateLimited {
                        retry_after,
                        message,
                    },
                headers,
            } => {
                assert_eq!(retry_after, 7200);
                assert!(message.contains("daily"));
                assert_eq!(headers.reset, at("2026-03-09T04:00:00Z").timestamp());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn daily_refusal_on_the_long_day() {
        // 2026-11-01 is 25 hours long: from 00:30 EDT (04:30Z) the reset is 24.5 h away.
        let now = at("2026-11-01T04:30:00Z");
        match decide(&counted(now, 1, 11), 5, 10, now) {
            Decision::Refuse {
                error: ApiError::RateLimited { retry_after, .. },
                headers,
                ..
            } => {
                assert_eq!(retry_after, 24 * 3600 + 1800);
                assert_eq!(headers.reset, at("2026-11-02T05:00:00Z").timestamp());
            }
            other => panic!("{other:?}"),
        }
    }
}
