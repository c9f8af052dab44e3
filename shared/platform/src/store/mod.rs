//! The single-table store: key design, item mapping and the database error rules.
//!
//! # Key design (table `pulseboard`, keys `pk`/`sk`, index `gsi1` on `gsi1pk`/`gsi1sk`)
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | company | `C#<company>` | `COMPANY` | plan, limits, status, parent (partner) |
//! | user | `C#<company>` | `USER#<user>` | password hash, roles, lockout |
//! | email claim | `EMAIL#<lowercase email>` | `EMAIL` | unique across the service; login lookup |
//! | API key | `C#<company>` | `APIKEY#<key>` | name, scopes, expiry, usage, revocation |
//! | key hash | `KEYHASH#<sha256>` | `KEYHASH` | immutable hash → (company, key, user) map |
//! | refresh token | `REFRESH#<jti>` | `REFRESH` | family, used, revoked; `ttl` |
//! | token family | `FAMILY#<family>` | `FAMILY` | revoked when a used refresh token returns |
//! | rate counter | `RATE#<company>` | `D#<NY date>` | `n` today, `c` in second `s`, `u#<key>`/`l#<key>` each key's uses and last use; conditional atomic `ADD`; `ttl` (removal folds the key uses into the keys) |
//! | login failures | `LOGINFAIL#<email>` | `RECENT` | the times of recent failures (a rolling window), appended atomically; `ttl` |
//! | custom role | `C#<company>` | `ROLE#<role>` | name, permissions |
//! | group | `C#<company>` | `GROUP#<group>` | name; members are users whose `groups` hold it |
//! | reset token | `RESET#<sha256>` | `RESET` | one-time password reset; `ttl` |
//! | data source / Klip / dashboard | `C#<company>` | `DS#<id>` / `KLIP#<id>` / `DASH#<id>` | `meta` (name, slug, version, share rights) + the record; ids sort by creation (companies made since they do: `assets_counted`), so a list in creation order is a `Query` with a `Limit` |
//! | slug claim | `C#<company>` | `SLUG#<PREFIX><slug>` | → id; written with the asset, so slugs are unique |
//! | asset count | `C#<company>` | `COUNT#<PREFIX>` | `n`: the company's assets of the kind, `ADD`ed by the transactions that create and delete them |
//! | favourite | `C#<company>` | `FAV#<user>#<dashboard>` | one per user and dashboard |
//! | published link | `PUBLINK#<sha256 of token>` | `PUBLINK` | → company, dashboard, expiry |
//! | report | `C#<company>` | `REPORT#<id>` | an asset; when scheduled, `gsi1pk = DUE#`, `gsi1sk = <next_run_at>#<company>#<id>` |
//! | (due index) | | | `gsi1pk = DUE#`: scheduled reports, URL data sources at `next_refresh_at`, running jobs at their lease's end |
//! | report run | `C#<company>` | `RUN#<report>#<run>` | `entity = report_run`; run ids sort by time; the stream passes inserted `queued` runs to the worker |
//! | refresh job | `C#<company>` | `REFRESHJOB#<datasource>#<job>` | `entity = datasource_refresh`; like a run; `ttl` |
//! | idempotency key | `C#<company>` | `IDEM#<report>#<sha256 of key>` | → the run it queued; `ttl` |
//! | alert | `C#<company>` | `ALERT#<id>` | an asset; `gsi1pk = WATCH#<company>#<klip>`, `gsi1sk = <id>`: a Klip's alerts in one query |
//! | alert event | `C#<company>` | `ALERTEVT#<alert>#<event>` | event ids sort by time; `ttl` |
//! | client account | `C#<client>` | `COMPANY` | a company with `parent_id`; `gsi1pk = PARTNER#<partner>`, `gsi1sk = <created>#<id>` |
//!
//! Data source files live in S3 under `<company>/datasources/<id>/<data_id>/` (`raw`,
//! `rows.json`); the item's `data_id` names the current copy. A report run's file is
//! `<company>/reports/<report>/<run>/report.<format>`.
//!
//! Access patterns: everything a company owns is one `Query` on its partition (begins_with on
//! the sort key); credentials resolve with `GetItem` on their own partitions; a partner lists
//! its client accounts through `gsi1`. `ttl` only garbage-collects: nothing relies on it.

pub mod accounts;
pub mod alerts;
pub mod assets;
pub mod audit;
pub mod counters;
pub mod deliveries;
mod error;
pub mod files;
mod jobs;
pub mod keys;
pub mod records;
pub mod refreshes;
pub mod runs;
pub mod sessions;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
pub use error::{BoxError, OrApiError, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    pub fn to_item(&self) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(self.pk.clone())),
            ("sk".to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }
}

/// The DynamoDB and S3 clients, built once per process, and the names they work on. The
/// clients stay inside the store: everything else reads and writes through its methods and
/// the repositories ([`Store::users`], [`Store::api_keys`], ...), which name what each
/// expression does.
#[derive(Clone, Debug)]
pub struct Store {
    db: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    table: String,
    bucket: String,
}

/// Maps an SDK failure to the API's error: throttling, timeouts and an unreachable database
/// are 503 (the client may retry); anything else is a 500 with the cause logged.
pub fn db_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    service_error("database", operation, err)
}

/// Maps an SDK failure of `service` (the database or the file storage) to the API's error:
/// throttling, timeouts and an unreachable service are 503 naming it (the client may
/// retry); anything else is a 500 with the cause logged.
pub(crate) fn service_error<E, R>(service: &str, operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        // A single-item write to an item a transaction is changing at that moment.
        "TransactionConflictException",
    ];
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            tracing::warn!(operation, error = ?err, "{service} unreachable");
            StoreError::Unavailable {
                message: format!("the {service} is unavailable; retry shortly"),
                source: Some(err.into()),
            }
        }
        SdkError::ServiceError(failure)
            if failure.err().code() == Some("ValidationException")
                && failure
                    .err()
                    .message()
                    .is_some_and(|m| m.contains("Item size")) =>
        {
            // An update that would take an item past 400 KB (whole writes are checked
            // before, see `fits_in_an_item`): the request's data is too large, not our fault.
            StoreError::TooLarge(format!(
                "this change would make a stored record larger than the database's 400 KB ({operation})"
            ))
        }
        SdkError::ServiceError(failure)
            if failure.err().code().is_some_and(|c| RETRYABLE.contains(&c)) =>
        {
            tracing::warn!(
                operation,
                code = failure.err().code(),
                "{service} throttled"
            );
            StoreError::Unavailable {
                message: format!("the {service} is busy; retry shortly"),
                source: Some(err.into()),
            }
        }
        _ => StoreError::failed(format!("{service}: {operation}"), err),
    }
}

pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::failed("decoding item", e))
}

/// The item for `value` stored under `key` (plus any extra attributes such as `gsi1pk`).
/// A number the database cannot store is a 400 naming where it is (see [`storable`]).
/// An item over [`MAX_ITEM_BYTES`] is a 413 naming its largest fields (see
/// [`fits_in_an_item`]).
pub fn to_item<T: Serialize>(key: &Key, value: &T) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(value).map_err(|e| StoreError::failed("encoding item", e))?;
    for (name, attribute) in &item {
        storable(name, attribute)?;
    }
    item.extend(key.to_item());
    fits_in_an_item(&item)?;
    Ok(item)
}

/// The largest item Pulseboard writes: DynamoDB refuses items over 400 KB (a `ValidationException`
/// that was a 500), and a margin leaves room for the small updates an item gets after a
/// whole write (a version, a counter, a link).
pub const MAX_ITEM_BYTES: usize = 390 * 1024;

/// The size DynamoDB counts for an item: each attribute's name and value (see
/// [`attribute_size`]).
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + attribute_size(value))
        .sum()
}

/// The size DynamoDB counts for a value (its documented rules, rounded up): text and bytes
/// their length, a number about one byte per two digits plus one, a list or map 3 bytes plus
/// one per element plus the elements (and a map's keys).
pub fn attribute_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number.len() / 2 + 2,
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| n.len() / 2 + 2).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + attribute_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + attribute_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Refuses an item over [`MAX_ITEM_BYTES`] with a 413 that names its largest fields (a map's
/// largest entry when it holds most of it: `properties.headers`), so the caller knows what
/// to shorten, before the database refuses it.
pub fn fits_in_an_item(item: &Item) -> Result<(), StoreError> {
    let size = item_size(item);
    if size <= MAX_ITEM_BYTES {
        return Ok(());
    }
    let mut fields: Vec<(String, usize)> = item
        .iter()
        .map(|(name, value)| (largest_path(name, value), attribute_size(value)))
        .collect();
    fields.sort_by_key(|field| std::cmp::Reverse(field.1));
    let named: Vec<String> = fields
        .iter()
        .take(2)
        .map(|(path, bytes)| format!("{path} ({} KB)", bytes.div_ceil(1024)))
        .collect();
    Err(StoreError::TooLarge(format!(
        "this would be stored as {} KB, over the {} KB one record may hold: {} is the largest; shorten it",
        size.div_ceil(1024),
        MAX_ITEM_BYTES / 1024,
        named.join(", then "),
    )))
}

/// `name`, or within a map the path to the entry that holds most of it.
fn largest_path(name: &str, value: &AttributeValue) -> String {
    let AttributeValue::M(map) = value else {
        return name.to_owned();
    };
    let total = attribute_size(value);
    match map.iter().max_by_key(|(_, v)| attribute_size(v)) {
        Some((key, v)) if attribute_size(v) * 2 > total => {
            largest_path(&format!("{name}.{key}"), v)
        }
        _ => name.to_owned(),
    }
}

/// `value` as one attribute stored as `name` (what the 400 names if a number in it cannot be
/// stored).
pub fn to_attribute<T: Serialize>(name: &str, value: &T) -> Result<AttributeValue, StoreError> {
    let attribute = serde_dynamo::to_attribute_value(value)
        .map_err(|e| StoreError::failed(format!("encoding {name}"), e))?;
    storable(name, &attribute)?;
    Ok(attribute)
}

/// DynamoDB numbers are 0 or of magnitude 1e-130 to below 1e126: a JSON number outside
/// that (`-5e-324`, `1e300`, both valid JSON and valid `f64`) would make the write fail. Free
/// JSON (client properties, a layout's state) and numeric fields can carry one, so every
/// encoded item is checked before it is written and the request gets a 400 naming the
/// attribute path instead of a 500.
pub fn storable(path: &str, value: &AttributeValue) -> Result<(), StoreError> {
    match unstorable_number(value) {
        None => Ok(()),
        Some(rest) => Err(StoreError::Unstorable(domain::FieldError::new(
            format!("{path}{rest}"),
            "numbers must be 0 or of magnitude 1e-130 to 1e125 (the database stores no others)",
        ))),
    }
}

fn fits(number: &str) -> bool {
    number
        .parse::<f64>()
        .is_ok_and(|x| x == 0.0 || (x.is_finite() && (1e-130..1e126).contains(&x.abs())))
}

/// Where in `value` the first number the database cannot store is (`""` for `value` itself,
/// `"[3]"`, `".key[0]"`), if anywhere; the path is only built for that one.
fn unstorable_number(value: &AttributeValue) -> Option<String> {
    match value {
        AttributeValue::N(n) => (!fits(n)).then(String::new),
        AttributeValue::Ns(numbers) => numbers.iter().any(|n| !fits(n)).then(String::new),
        AttributeValue::L(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| unstorable_number(item).map(|rest| format!("[{i}]{rest}"))),
        AttributeValue::M(map) => map
            .iter()
            .find_map(|(k, item)| unstorable_number(item).map(|rest| format!(".{k}{rest}"))),
        _ => None,
    }
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A time as items store it (RFC 3339, UTC, seconds: see `domain::time`), so conditions
/// compare it with stored times as text.
pub fn t(value: chrono::DateTime<chrono::Utc>) -> AttributeValue {
    AttributeValue::S(crate::time::rfc3339(value))
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn string(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

impl Store {
    /// A strongly consistent read of one item.
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: impl std::borrow::Borrow<Key>,
    ) -> Result<Option<T>, StoreError> {
        let key = key.borrow();
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| db_error("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// Writes `value` under `key`, replacing what was there.
    pub async fn put<T: Serialize>(&self, key: &Key, value: &T) -> Result<(), StoreError> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        self.db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(key, value)?))
            .send()
            .await
            .map_err(|e| db_error("PutItem", e))?;
        Ok(())
    }

    /// Every item of a partition whose sort key starts with `prefix`, strongly consistent.
    pub async fn query_prefix<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.query_prefix_first(pk, prefix, usize::MAX, true).await
    }

    /// [`Self::query_prefix`], stopping after the first `max` items in sort-key order
    /// (`forward`) or its reverse.
    pub async fn query_prefix_first<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
        max: usize,
        forward: bool,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < max {
            // DynamoDB takes a limit of at most 2^31 - 1.
            let left = i32::try_from(max - out.len()).ok();
            let mut query = self
                .db
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk));
            // An empty prefix reads the whole partition (begins_with refuses "").
            query = if prefix.is_empty() {
                query.key_condition_expression("pk = :pk")
            } else {
                query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix))
            };
            let page = query
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_limit(left)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Atomically adds `delta` to the number `n` of a counter item, setting its `ttl`;
    /// answers the new value.
    pub async fn add_to_counter(&self, key: &Key, delta: i64, ttl: i64) -> Result<i64, StoreError> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        let out = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression("ADD n :d SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":d", n(delta))
            .expression_attribute_values(":ttl", n(ttl))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| db_error("UpdateItem", e))?;
        Ok(out
            .attributes
            .as_ref()
            .and_then(|a| number(a, "n"))
            .unwrap_or(0))
    }

    /// One cheap call per service during init, concurrently, so the first request does not
    /// pay the TLS handshakes.
    pub async fn warm_up(&self) {
        let (table, bucket) = tokio::join!(
            self.db.describe_table().table_name(&self.table).send(),
            self.s3.head_bucket().bucket(&self.bucket).send(),
        );
        // Expected before the first `create-table` (or with a local stack still starting):
        // one short line each, not the SDK's whole error.
        if let Err(e) = table {
            tracing::info!(table = %self.table, error = %short_error(&e), "warm-up: the table is not reachable yet");
        }
        if let Err(e) = bucket {
            tracing::info!(bucket = %self.bucket, error = %short_error(&e), "warm-up: the bucket is not reachable yet");
        }
    }
}

/// An SDK error in a few words: the service's error code and message, or the kind of
/// failure (timeout, no connection) without the request and response dumps.
pub fn short_error<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => "service error".to_owned(),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not connect".to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ConstructionFailure(_) => "request not built".to_owned(),
        _ => "request failed".to_owned(),
    }
}

/// The AWS SDK's configuration loader (region, credentials and endpoints from its own
/// environment) with the one HTTPS client every Pulseboard client uses: hyper 1 and rustls
/// on ring. The SDK's crates are built without their default clients (see the workspace's
/// Cargo.toml), so every SDK configuration starts here.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}

/// Builds the store from the AWS SDK's own environment (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_S3`, region, credentials). With a local S3 endpoint, path-style
/// addressing is used, as S3-protocol servers on 127.0.0.1 need.
pub async fn connect(table: &str, bucket: &str) -> Store {
    connect_with(&sdk_config().await, table, bucket)
}

/// The SDK configuration every client of a process shares (one HTTPS client: its TLS roots
/// are loaded once): [`sdk_defaults`] with the region, retries and timeouts below.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, Region};
    use std::time::Duration;
    // The region from the environment (`AWS_REGION` on Lambda) or the profile; not the
    // default chain's instance metadata (EC2 only), whose client would not be `sdk_defaults`'.
    let region = aws_config::meta::region::RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(Region::new("us-east-1"));
    sdk_defaults()
        .region(region)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                // Inside the request deadline (8 s by default, see `http::DEFAULT_DEADLINE`), so
                // a database that does not answer is a 503 the client still receives.
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(6))
                .build(),
        )
        .load()
        .await
}

/// [`connect`] with a loaded configuration ([`sdk_config`]).
pub fn connect_with(sdk: &aws_config::SdkConfig, table: &str, bucket: &str) -> Store {
    let local_s3 = std::env::var("AWS_ENDPOINT_URL_S3").is_ok();
    // Every operation is counted against the request it serves (crate::metrics).
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(local_s3)
            .interceptor(crate::metrics::CountCalls)
            .build(),
    );
    Store {
        db: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(crate::metrics::CountCalls)
                .interceptor(crate::audit::Stamp)
                .build(),
        ),
        s3,
        table: table.to_owned(),
        bucket: bucket.to_owned(),
    }
}

/// Why a write did not happen: refused for a reason the caller can act on (a typed
/// conflict such as a taken slug), or failed (the database is down, a bug).
#[derive(Debug)]
pub enum WriteError<R> {
    Refused(R),
    Failed(StoreError),
}

impl<R> From<StoreError> for WriteError<R> {
    fn from(error: StoreError) -> Self {
        WriteError::Failed(error)
    }
}

impl<R> From<crate::held::NotAdmitted> for WriteError<R> {
    fn from(why: crate::held::NotAdmitted) -> Self {
        WriteError::Failed(why.into())
    }
}

impl<R> WriteError<R> {
    /// The API error for a refusal, using `answer`.
    pub fn into_api(
        self,
        answer: impl FnOnce(R) -> crate::error::ApiError,
    ) -> crate::error::ApiError {
        match self {
            WriteError::Refused(reason) => answer(reason),
            WriteError::Failed(error) => error.into(),
        }
    }

    /// A store error for a refusal, using `answer` (a repository's own conflict).
    pub fn into_store(self, answer: impl FnOnce(R) -> StoreError) -> StoreError {
        match self {
            WriteError::Refused(reason) => answer(reason),
            WriteError::Failed(error) => error,
        }
    }
}

/// Writes that happen together or not at all (`TransactWriteItems`), built step by step by
/// the repositories. A failed condition is reported as the index of its step.
pub struct Transaction<'a> {
    store: &'a Store,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
}

impl<'a> Transaction<'a> {
    /// Writes `value` under `key`; the step fails if the item exists.
    pub fn create<T: Serialize>(&mut self, key: &Key, value: &T) -> Result<usize, StoreError> {
        self.create_item(to_item(key, value)?)
    }

    /// Writes a whole item (keys included); the step fails if it exists.
    pub fn create_item(&mut self, item: Item) -> Result<usize, StoreError> {
        self.put_item_if(item, "attribute_not_exists(pk)", &[], Vec::new())
    }

    /// Deletes `key` (nothing happens when it is absent).
    pub fn delete(&mut self, key: &Key) -> Result<usize, StoreError> {
        self.delete_if(key, None)
    }

    /// Deletes `key`; the step fails if it is absent.
    pub fn delete_existing(&mut self, key: &Key) -> Result<usize, StoreError> {
        self.delete_if(key, Some("attribute_exists(pk)"))
    }

    fn delete_if(&mut self, key: &Key, condition: Option<&str>) -> Result<usize, StoreError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.to_item()))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| StoreError::failed("building a request", e))?;
        let step = self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .delete(delete)
                .build(),
        )?;
        // An audited item's delete names its author in a note written with it (see
        // crate::audit): one more step of the same transaction, no round trip.
        if let Some(note) = crate::audit::deletion_note(&key.to_item()) {
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.store.table)
                .set_item(Some(note))
                .build()
                .map_err(|e| StoreError::failed("building a request", e))?;
            self.push(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(put)
                    .build(),
            )?;
        }
        Ok(step)
    }

    /// Replaces a whole item only if `condition` holds (repositories only: conditions are
    /// named by the repository method that uses them).
    fn put_item_if(
        &mut self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        let mut builder = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.store.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in names {
            builder = builder.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            builder = builder.expression_attribute_values(k, v);
        }
        let put = builder
            .build()
            .map_err(|e| StoreError::failed("building a request", e))?;
        self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(put)
                .build(),
        )
    }

    /// An update expression on `key` (repositories only).
    fn update(
        &mut self,
        key: &Key,
        expression: &str,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        self.update_named(key, expression, condition, &[], values)
    }

    /// [`Self::update`] with attribute names (`#name`) in its expressions.
    fn update_named(
        &mut self,
        key: &Key,
        expression: &str,
        condition: Option<&str>,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        let mut builder = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.to_item()))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned));
        for (k, v) in names {
            builder = builder.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            builder = builder.expression_attribute_values(k, v);
        }
        let update = builder
            .build()
            .map_err(|e| StoreError::failed("building a request", e))?;
        self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .update(update)
                .build(),
        )
    }

    fn push(
        &mut self,
        item: aws_sdk_dynamodb::types::TransactWriteItem,
    ) -> Result<usize, StoreError> {
        self.items.push(item);
        Ok(self.items.len() - 1)
    }

    /// Writes all or nothing; `Refused(i)` names the first step whose condition failed.
    pub async fn commit(mut self) -> Result<(), WriteError<usize>> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        if let [only] = self.items.as_mut_slice() {
            if let Some(update) = only.update.take() {
                return self.store.update_alone(update).await;
            }
            if let Some(put) = only.put.take() {
                return self.store.put_alone(put).await;
            }
        }
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .store
                .db
                .transact_write_items()
                .set_transact_items(Some(self.items.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons()
                }
                _ => &[],
            };
            match cancelled(reasons) {
                Cancelled::Refused(index) => return Err(WriteError::Refused(index)),
                // Another transaction held one of its items (a kept count, say, that every
                // create of the kind updates): nothing was written, so it is sent again.
                Cancelled::Conflict if attempt < TRANSACTION_TRIES => {
                    let pause = rand::random_range(5..=20) * attempt as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Cancelled::Conflict | Cancelled::Throttled => {
                    tracing::warn!(attempt, reasons = ?reasons, "transaction cancelled: database busy");
                    return Err(WriteError::Failed(StoreError::Unavailable {
                        message: "the database is busy; retry shortly".into(),
                        source: Some(e.into()),
                    }));
                }
                Cancelled::Other => {
                    return Err(WriteError::Failed(db_error("TransactWriteItems", e)))
                }
            }
        }
    }

    /// Writes all or nothing; any failed condition is 409 with `conflict`.
    pub async fn commit_or_conflict(self, conflict: &str) -> Result<(), StoreError> {
        self.commit()
            .await
            .map_err(|e| e.into_store(|_| StoreError::Conflict(conflict.to_owned())))
    }
}

/// How many times a transaction is sent while another transaction holds one of its items.
const TRANSACTION_TRIES: u32 = 4;

/// Why DynamoDB cancelled a transaction, from its reasons (one per step).
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// This step's condition failed: an answer, not a failure.
    Refused(usize),
    /// Another transaction was changing one of its items: sending it again may succeed.
    Conflict,
    /// The database throttled one of its items: 503, as for any throttled call.
    Throttled,
    /// Anything else (a validation error, or no cancellation at all): the database error's
    /// own rules.
    Other,
}

fn cancelled(reasons: &[aws_sdk_dynamodb::types::CancellationReason]) -> Cancelled {
    if let Some(index) = reasons
        .iter()
        .position(|r| r.code() == Some("ConditionalCheckFailed"))
    {
        return Cancelled::Refused(index);
    }
    if reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
    {
        return Cancelled::Conflict;
    }
    let throttled = ["ThrottlingError", "ProvisionedThroughputExceeded"];
    if reasons
        .iter()
        .any(|r| r.code().is_some_and(|c| throttled.contains(&c)))
    {
        return Cancelled::Throttled;
    }
    Cancelled::Other
}

/// What a transaction's only step, written alone, answers: refused as step 0 when its
/// condition failed.
fn lone_step<O, E, R>(
    sent: Result<O, SdkError<E, R>>,
    operation: &str,
) -> Result<(), WriteError<usize>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match sent {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().and_then(|e| e.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Err(WriteError::Refused(0))
        }
        Err(e) => Err(WriteError::Failed(db_error(operation, e))),
    }
}

impl Store {
    /// A transaction's only step, an update, written as an `UpdateItem`: one item is all or
    /// nothing on its own, and a transaction would cost twice the write units (an alert's
    /// evaluation that changes only its state fields is one).
    async fn update_alone(
        &self,
        update: aws_sdk_dynamodb::types::Update,
    ) -> Result<(), WriteError<usize>> {
        let sent = self
            .db
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .send()
            .await;
        lone_step(sent, "UpdateItem")
    }

    /// A transaction's only step, a put, written as a `PutItem` (an asset's update that
    /// keeps its slug is one): all or nothing on its own, at half a transaction's write
    /// units.
    async fn put_alone(&self, put: aws_sdk_dynamodb::types::Put) -> Result<(), WriteError<usize>> {
        let sent = self
            .db
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
            .send()
            .await;
        lone_step(sent, "PutItem")
    }

    /// A transaction to build and commit.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            items: Vec::new(),
        }
    }

    /// Writes `value` under `key` if nothing is there; 409 with `conflict` otherwise.
    pub async fn create<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        conflict: &str,
    ) -> Result<(), StoreError> {
        self.create_item(to_item(key, value)?, conflict).await
    }

    /// Writes a whole item (keys included) if nothing is there; 409 with `conflict`
    /// otherwise.
    pub async fn create_item(&self, item: Item, conflict: &str) -> Result<(), StoreError> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict(conflict.to_owned()))
            }
            Err(e) => Err(db_error("PutItem", e)),
        }
    }

    /// A conditional single-item update that reports whether the condition held (the
    /// repositories' building block).
    async fn update_if(
        &self,
        key: &Key,
        expression: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        let mut request = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(expression)
            .condition_expression(condition);
        for (k, v) in names {
            request = request.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(db_error("UpdateItem", e)),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the table if it does not exist; answers whether it did.
    pub async fn create_table(&self) -> Result<bool, String> {
        crate::table::create_table(&self.db, &self.table).await
    }

    /// Creates the bucket if it does not exist; answers whether it did.
    pub async fn create_bucket(&self) -> Result<bool, String> {
        crate::table::create_bucket(&self.s3, &self.bucket).await
    }

    /// The ARN of the table's stream (what an event source mapping reads; `pulseboard
    /// serve` reads it itself).
    /// Whether the table exists (a missing table is `false`, any other failure an error).
    pub async fn table_exists(&self) -> Result<bool, String> {
        match self
            .db
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("DescribeTable: {}", short_error(&e))),
        }
    }

    pub async fn stream_arn(&self) -> Result<Option<String>, StoreError> {
        let out = self
            .db
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| db_error("DescribeTable", e))?;
        Ok(out.table.and_then(|t| t.latest_stream_arn))
    }

    /// The same store talking to another S3 endpoint (tests: a file storage that is down).
    #[cfg(feature = "test-support")]
    pub fn with_s3(mut self, sdk: &aws_config::SdkConfig) -> Self {
        self.s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(true)
                .build(),
        );
        self
    }

    /// The same store talking to another DynamoDB endpoint (tests: a database that is down).
    #[cfg(feature = "test-support")]
    pub fn with_dynamodb(mut self, sdk: &aws_config::SdkConfig) -> Self {
        self.db = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(crate::audit::Stamp)
                .build(),
        );
        self
    }

    /// One item as stored, all attributes (tests and tools).
    #[cfg(feature = "test-support")]
    pub async fn raw_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| db_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Every item of the table (tests: what is stored, e.g. that no secret is).
    #[cfg(feature = "test-support")]
    pub async fn scan_all(&self) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Scan", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

impl Store {
    /// Strongly consistent reads of several items in one `BatchGetItem`, in the order of
    /// `keys` (absent items are `None`). Unprocessed keys are asked for again.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        /// What one BatchGetItem request may name.
        const BATCH: usize = 100;
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        // BatchGetItem refuses a key named twice.
        let mut unique: Vec<&Key> = Vec::new();
        for key in keys {
            if !unique.contains(&key) {
                unique.push(key);
            }
        }
        let mut pending: Vec<Item> = Vec::new();
        for chunk in unique.chunks(BATCH) {
            pending = chunk.iter().map(|k| k.to_item()).collect();
            for _ in 0..5 {
                if pending.is_empty() {
                    break;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::failed("building a request", e))?;
                let out = self
                    .db
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| db_error("BatchGetItem", e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    found.insert((string(&item, "pk"), string(&item, "sk")), item);
                }
                pending = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                break;
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable {
                message: "the database is busy; retry shortly".into(),
                source: None,
            });
        }
        Ok(keys
            .iter()
            .map(|k| found.get(&(k.pk.clone(), k.sk.clone())).cloned())
            .collect())
    }

    /// Every item of a `gsi1` partition (eventually consistent, as every GSI read).
    pub async fn query_index<T: DeserializeOwned>(
        &self,
        gsi1pk: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", s(gsi1pk))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// How many items the query `query` makes matches (`Select=COUNT`, page after page).
    pub(crate) async fn count_matching(
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut start = None;
        loop {
            let page = query()
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            total += usize::try_from(page.count).unwrap_or(0);
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(total),
            }
        }
    }

    /// The first `wanted` items the query `query` makes matches, read backwards (newest
    /// first where sort keys begin with the time); its filters leave items out after the
    /// read, so it reads at least 100 at a time.
    pub(crate) async fn newest_matching<T: DeserializeOwned>(
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        wanted: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < wanted {
            let limit = (wanted - out.len()).max(100);
            let page = query()
                .scan_index_forward(false)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<T>(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(wanted);
        Ok(out)
    }

    /// Deletes one item (no error when absent). An audited item's delete is a transaction
    /// with its note (see [`crate::audit`]): still one round trip.
    pub async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        if domain::audit::is_audited_key(&key.pk, &key.sk) {
            let mut tx = self.transaction();
            tx.delete(key)?;
            return tx.commit().await.map_err(|e| {
                e.into_store(|_| {
                    StoreError::failed("deleting", "an unconditional delete was refused")
                })
            });
        }
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        self.db
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .send()
            .await
            .map_err(|e| db_error("DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> AttributeValue {
        AttributeValue::N(text.into())
    }

    #[test]
    fn a_cancelled_transaction_is_a_refusal_a_conflict_to_send_again_or_a_failure() {
        use aws_sdk_dynamodb::types::CancellationReason;
        let reason = |code: &str| CancellationReason::builder().code(code).build();
        let none = || reason("None");
        assert_eq!(
            cancelled(&[none(), reason("ConditionalCheckFailed"), none()]),
            Cancelled::Refused(1)
        );
        // A failed condition is the answer even when another step conflicted.
        assert_eq!(
            cancelled(&[
                reason("TransactionConflict"),
                reason("ConditionalCheckFailed")
            ]),
            Cancelled::Refused(1)
        );
        assert_eq!(
            cancelled(&[none(), reason("TransactionConflict")]),
            Cancelled::Conflict
        );
        assert_eq!(
            cancelled(&[reason("ThrottlingError"), none()]),
            Cancelled::Throttled
        );
        assert_eq!(
            cancelled(&[none(), reason("ValidationError")]),
            Cancelled::Other
        );
        assert_eq!(cancelled(&[]), Cancelled::Other);
    }

    #[test]
    fn numbers_the_database_stores_pass_and_others_are_named() {
        for ok in [
            "0",
            "-0",
            "1e-130",
            "-1e-130",
            "9.99e125",
            "0.30000000000000004",
            "42",
        ] {
            assert!(storable("x", &n(ok)).is_ok(), "{ok}");
        }
        for bad in ["5e-324", "1e-131", "1e126", "-1e300"] {
            assert!(storable("x", &n(bad)).is_err(), "{bad}");
        }
        let nested = AttributeValue::M(
            [(
                "state".to_owned(),
                AttributeValue::L(vec![
                    n("1"),
                    AttributeValue::M([("w".to_owned(), n("1e300"))].into()),
                ]),
            )]
            .into(),
        );
        match storable("layout", &nested) {
            Err(StoreError::Unstorable(field)) => assert_eq!(field.field, "layout.state[1].w"),
            other => panic!("{other:?}"),
        }
        assert!(storable("s", &AttributeValue::Ns(vec!["1".into(), "1e200".into()])).is_err());
    }
}
