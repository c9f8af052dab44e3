//! The repository of counters: the per-company rate counter items (see
//! [`crate::ratelimit`] for how they are used).

use super::StoreError;
use super::{db_error, n, number, s, Item, Key, Store, WriteError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub struct RateCounters<'a>(&'a Store);

impl Store {
    pub fn rate_counters(&self) -> RateCounters<'_> {
        RateCounters(self)
    }
}

/// The counts after adding one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Requests in the counted second.
    pub in_second: i64,
    /// Requests today.
    pub today: i64,
    /// The keys whose uses the day item holds (see [`uses_attribute`]).
    pub keys: Vec<String>,
}

/// How many keys' uses a day counter item keeps: with the request counts, 8 keys (about 78
/// bytes each) keep it under 1 KB, one write unit, with room for a few more that instances
/// deciding at once may add. The uses of any further key that day go to the key's own item
/// (see `crate::auth::verify::key_use_counted`).
pub const KEYS_PER_DAY_ITEM: usize = 8;

/// A day counter item also counts the requests each API key of its company made that day
/// (when counted against that company): `u#{key}` is how many, `l#{key}` the last one's
/// time (Unix seconds: a number is shorter than the text, and every byte of the item is
/// paid on every request of the company; with both, the [`KEYS_PER_DAY_ITEM`] keys it keeps leave the
/// item within one write unit). Keeping a key's uses there costs no write of its own: the request's
/// counter update carries them.
pub fn uses_attribute(key_id: &str) -> String {
    format!("u#{key_id}")
}

/// See [`uses_attribute`].
pub fn last_use_attribute(key_id: &str) -> String {
    format!("l#{key_id}")
}

/// The uses of one key that counter items hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUses {
    pub count: u64,
    pub last: Option<DateTime<Utc>>,
}

impl KeyUses {
    pub fn add(&mut self, count: u64, last: Option<DateTime<Utc>>) {
        self.count += count;
        self.last = self.last.max(last);
    }
}

/// The key uses a day counter item holds, by key id.
pub fn key_uses_of(item: &Item) -> HashMap<String, KeyUses> {
    let mut uses: HashMap<String, KeyUses> = HashMap::new();
    for name in item.keys() {
        if let Some(key_id) = name.strip_prefix("u#") {
            let count = number(item, name).unwrap_or(0).max(0) as u64;
            let last = number(item, &last_use_attribute(key_id))
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
            uses.entry(key_id.to_owned()).or_default().add(count, last);
        }
    }
    uses
}

impl RateCounters<'_> {
    /// Every key use the company's day counter items still hold (the days not yet folded
    /// into the keys' own items, see `ApiKeys::fold_day`), strongly consistent.
    pub async fn key_uses(self, company: &str) -> Result<HashMap<String, KeyUses>, StoreError> {
        let store = self.0;
        let mut uses: HashMap<String, KeyUses> = HashMap::new();
        let mut start = None;
        loop {
            let page = store
                .db
                .query()
                .table_name(&store.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", super::s(super::keys::rate_pk(company)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                for (key_id, day) in key_uses_of(&item) {
                    uses.entry(key_id).or_default().add(day.count, day.last);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(uses),
            }
        }
    }

    /// Adds one request to the day counter item `key` and to its second: with
    /// `same_second`, to the second `second` the item already counts; otherwise the item
    /// starts counting `second` (only if it counts an older one). Refused with the second
    /// the item counts when that guess was wrong.
    ///
    /// With a `marker` (unique to the request), both guesses may be sent at once and at most
    /// one holds: the one that starts the second writes the marker (`f`), and the one that
    /// adds to it holds only while `f` is another request's, so it cannot also count the
    /// request once the other has started the second for it.
    pub async fn add(
        &self,
        key: &Key,
        second: i64,
        same_second: bool,
        ttl: i64,
        key_use: Option<(&str, DateTime<Utc>)>,
        marker: Option<&str>,
    ) -> Result<Counts, WriteError<Option<i64>>> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let store = self.0;
        let request = store
            .db
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key.to_item()))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":s", n(second))
            .expression_attribute_values(":ttl", n(ttl))
            // The whole item: which keys it holds (a return value costs no capacity).
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // The key's use rides along: `ADD #u :one SET #l = :now`.
        let (add_use, set_last, request) = match key_use {
            Some((key_id, now)) => (
                ", #u :one",
                ", #l = :now",
                request
                    .expression_attribute_names("#u", uses_attribute(key_id))
                    .expression_attribute_names("#l", last_use_attribute(key_id))
                    .expression_attribute_values(":now", n(now.timestamp())),
            ),
            None => ("", "", request),
        };
        let (request, not_marked, set_marker) = match marker {
            Some(marker) => (
                request.expression_attribute_values(":f", s(marker)),
                " AND (attribute_not_exists(f) OR f <> :f)",
                ", f = :f",
            ),
            None => (request, "", ""),
        };
        let request = if same_second {
            request
                .update_expression(format!(
                    "ADD n :one, c :one{add_use} SET #ttl = :ttl{set_last}"
                ))
                .condition_expression(format!("s = :s{not_marked}"))
        } else {
            request
                .update_expression(format!(
                    "SET s = :s, c = :one, #ttl = :ttl{set_last}{set_marker} ADD n :one{add_use}"
                ))
                .condition_expression("attribute_not_exists(s) OR s < :s")
        };
        match request.send().await {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                Ok(Counts {
                    in_second: number(&attributes, "c").unwrap_or(1),
                    today: number(&attributes, "n").unwrap_or(1),
                    keys: attributes
                        .keys()
                        .filter_map(|name| name.strip_prefix("u#"))
                        .map(str::to_owned)
                        .collect(),
                })
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Err(
                    WriteError::Refused(failed.item.as_ref().and_then(|i| number(i, "s"))),
                ),
                _ => Err(WriteError::Failed(db_error("UpdateItem", e))),
            },
        }
    }

    /// Takes one request off the day count (and, with `key_use`, off that key's uses).
    pub async fn give_back_day(
        &self,
        key: &Key,
        ttl: i64,
        key_use: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(key_id) = key_use else {
            return self.0.add_to_counter(key, -1, ttl).await.map(|_| ());
        };
        let uses = uses_attribute(key_id);
        self.0
            .update_if(
                key,
                "ADD n :minus, #u :minus SET #ttl = :ttl",
                "attribute_exists(pk)",
                &[("#u", uses.as_str()), ("#ttl", "ttl")],
                vec![(":minus", n(-1)), (":ttl", n(ttl))],
            )
            .await
            .map(|_| ())
    }

    /// Takes one request off the day count and off second `second` (and, with `key_use`,
    /// off that key's uses), if the item still counts that second; answers whether it did.
    pub async fn give_back_both(
        &self,
        key: &Key,
        second: i64,
        key_use: Option<&str>,
    ) -> Result<bool, StoreError> {
        let uses = key_use.map(uses_attribute);
        let (expression, names): (&str, Vec<(&str, &str)>) = match &uses {
            Some(uses) => (
                "ADD n :minus, c :minus, #u :minus",
                vec![("#u", uses.as_str())],
            ),
            None => ("ADD n :minus, c :minus", vec![]),
        };
        self.0
            .update_if(
                key,
                expression,
                "s = :s",
                &names,
                vec![(":minus", n(-1)), (":s", n(second))],
            )
            .await
    }
}

/// Failed logins per email, as the times they happened.
pub struct LoginFailures<'a>(&'a Store);

impl Store {
    pub fn login_failures(&self) -> LoginFailures<'_> {
        LoginFailures(self)
    }
}

/// How many failure times an email's item keeps (only the last few matter).
const KEPT_FAILURES: usize = 32;

impl LoginFailures<'_> {
    /// Records a failed login at `now` (Unix seconds) and answers how many failures of the
    /// email fall in the `window` seconds up to now (a rolling window).
    pub async fn record(&self, email: &str, now: i64, window: i64) -> Result<usize, StoreError> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
        let store = self.0;
        let key = super::keys::login_failures(email);
        let out = store
            .db
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key.to_item()))
            .update_expression(
                "SET fails = list_append(if_not_exists(fails, :empty), :now), #ttl = :ttl",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":now", AttributeValue::L(vec![n(now)]))
            .expression_attribute_values(":ttl", n(now + 2 * window))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| db_error("UpdateItem", e))?;
        let times: Vec<i64> = match out.attributes.as_ref().and_then(|a| a.get("fails")) {
            Some(AttributeValue::L(list)) => list
                .iter()
                .filter_map(|v| match v {
                    AttributeValue::N(t) => t.parse().ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        // Keep the item small: only the latest times can still count.
        if times.len() > KEPT_FAILURES {
            let kept: Vec<AttributeValue> = times[times.len() - KEPT_FAILURES / 2..]
                .iter()
                .map(|t| n(*t))
                .collect();
            let _ = store
                .update_if(
                    &key,
                    "SET fails = :kept",
                    "attribute_exists(pk)",
                    &[],
                    vec![(":kept", AttributeValue::L(kept))],
                )
                .await;
        }
        Ok(times.iter().filter(|t| **t > now - window).count())
    }

    /// Forgets an email's failed logins (an admin unlocked the user).
    pub async fn forget(&self, email: &str) -> Result<(), StoreError> {
        self.0.delete(&super::keys::login_failures(email)).await
    }
}
