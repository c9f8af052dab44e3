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
//! | rate counter | `RATE#<company>` | `D#<NY date>` | `n` today, `c` in second `s`; conditional atomic `ADD`; `ttl` |
//! | login failures | `LOGINFAIL#<email>` | `W#<15-min window>` | atomic `ADD n`; `ttl` |
//! | custom role | `C#<company>` | `ROLE#<role>` | name, permissions |
//! | group | `C#<company>` | `GROUP#<group>` | name; members are users whose `groups` hold it |
//! | reset token | `RESET#<sha256>` | `RESET` | one-time password reset; `ttl` |
//! | data source / Klip / dashboard | `C#<company>` | `DS#<id>` / `KLIP#<id>` / `DASH#<id>` | `meta` (name, slug, version, share rights) + the record |
//! | slug claim | `C#<company>` | `SLUG#<PREFIX><slug>` | → id; written with the asset, so slugs are unique |
//! | favourite | `C#<company>` | `FAV#<user>#<dashboard>` | one per user and dashboard |
//! | published link | `PUBLINK#<sha256 of token>` | `PUBLINK` | → company, dashboard, expiry |
//! | client account | `C#<client>` | `COMPANY` | a company with `parent_id`; `gsi1pk = PARTNER#<partner>`, `gsi1sk = <created>#<id>` |
//!
//! Data source files live in S3 under `<company>/datasources/<id>/<data_id>/` (`raw`,
//! `rows.json`); the item's `data_id` names the current copy.
//!
//! Access patterns: everything a company owns is one `Query` on its partition (begins_with on
//! the sort key); credentials resolve with `GetItem` on their own partitions; a partner lists
//! its client accounts through `gsi1`. `ttl` only garbage-collects: nothing relies on it.

use crate::error::ApiError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
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

/// Every key the store writes, in one place.
pub mod keys {
    use super::Key;

    pub fn company_pk(company: &str) -> String {
        format!("C#{company}")
    }
    pub fn company(company: &str) -> Key {
        Key::new(company_pk(company), "COMPANY")
    }
    pub fn user(company: &str, user: &str) -> Key {
        Key::new(company_pk(company), format!("USER#{user}"))
    }
    pub fn email(email: &str) -> Key {
        Key::new(format!("EMAIL#{}", email.to_lowercase()), "EMAIL")
    }
    pub fn api_key(company: &str, key: &str) -> Key {
        Key::new(company_pk(company), format!("APIKEY#{key}"))
    }
    pub fn key_hash(hash: &str) -> Key {
        Key::new(format!("KEYHASH#{hash}"), "KEYHASH")
    }
    pub fn refresh(jti: &str) -> Key {
        Key::new(format!("REFRESH#{jti}"), "REFRESH")
    }
    pub fn family(family: &str) -> Key {
        Key::new(format!("FAMILY#{family}"), "FAMILY")
    }
    pub fn rate_day(company: &str, ny_date: &str) -> Key {
        Key::new(format!("RATE#{company}"), format!("D#{ny_date}"))
    }
    pub fn role(company: &str, role: &str) -> Key {
        Key::new(company_pk(company), format!("ROLE#{role}"))
    }
    pub fn group(company: &str, group: &str) -> Key {
        Key::new(company_pk(company), format!("GROUP#{group}"))
    }
    pub fn reset_token(hash: &str) -> Key {
        Key::new(format!("RESET#{hash}"), "RESET")
    }
    pub fn published_link(token_hash: &str) -> Key {
        Key::new(format!("PUBLINK#{token_hash}"), "PUBLINK")
    }
    pub fn partner_index(partner: &str) -> String {
        format!("PARTNER#{partner}")
    }
    /// A data source, Klip or dashboard.
    pub fn asset(kind: domain::asset::Kind, company: &str, id: &str) -> Key {
        Key::new(company_pk(company), format!("{}{id}", kind.prefix()))
    }
    /// The claim of a slug among a company's assets of one kind (value: the id).
    pub fn slug(kind: domain::asset::Kind, company: &str, slug: &str) -> Key {
        Key::new(company_pk(company), format!("SLUG#{}{slug}", kind.prefix()))
    }
    pub fn favorite(company: &str, user: &str, dashboard: &str) -> Key {
        Key::new(company_pk(company), format!("FAV#{user}#{dashboard}"))
    }
    pub fn login_failures(email: &str, window: i64) -> Key {
        Key::new(
            format!("LOGINFAIL#{}", email.to_lowercase()),
            format!("W#{window}"),
        )
    }
}

/// The DynamoDB and S3 clients, built once per process, and the names they work on.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub table: String,
    pub bucket: String,
}

/// Maps an SDK failure to the API's error: throttling, timeouts and an unreachable database
/// are 503 (the client may retry); anything else is a 500 with the cause logged.
pub fn db_error<E, R>(operation: &str, err: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            tracing::warn!(operation, error = ?err, "database unreachable");
            ApiError::Unavailable("the database is unavailable; retry shortly".into())
        }
        SdkError::ServiceError(service)
            if service.err().code().is_some_and(|c| RETRYABLE.contains(&c)) =>
        {
            tracing::warn!(operation, code = service.err().code(), "database throttled");
            ApiError::Unavailable("the database is busy; retry shortly".into())
        }
        _ => ApiError::internal(format!(
            "{operation}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        )),
    }
}

pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, ApiError> {
    serde_dynamo::from_item(item).map_err(|e| ApiError::internal(format!("decoding item: {e}")))
}

/// The item for `value` stored under `key` (plus any extra attributes such as `gsi1pk`).
pub fn to_item<T: Serialize>(key: &Key, value: &T) -> Result<Item, ApiError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| ApiError::internal(format!("encoding item: {e}")))?;
    item.extend(key.to_item());
    Ok(item)
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
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
    ) -> Result<Option<T>, ApiError> {
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
    pub async fn put<T: Serialize>(&self, key: &Key, value: &T) -> Result<(), ApiError> {
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
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
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

    /// Atomically adds `delta` to the number `n` of a counter item, setting its `ttl`;
    /// answers the new value.
    pub async fn add_to_counter(&self, key: &Key, delta: i64, ttl: i64) -> Result<i64, ApiError> {
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
        if let Err(e) = table {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "warm-up DescribeTable failed");
        }
        if let Err(e) = bucket {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "warm-up HeadBucket failed");
        }
    }
}

/// Builds the store from the AWS SDK's own environment (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_S3`, region, credentials). With a local S3 endpoint, path-style
/// addressing is used, as S3-protocol servers on 127.0.0.1 need.
pub async fn connect(table: &str, bucket: &str) -> Store {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
    use std::time::Duration;
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new("us-east-1"));
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    let local_s3 = std::env::var("AWS_ENDPOINT_URL_S3").is_ok();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(local_s3)
            .build(),
    );
    Store {
        db: aws_sdk_dynamodb::Client::new(&sdk),
        s3,
        table: table.to_owned(),
        bucket: bucket.to_owned(),
    }
}

/// A put that fails when the item already exists.
pub fn put_new(
    table: &str,
    item: Item,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(ApiError::internal)?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .put(put)
        .build())
}

impl Store {
    /// Writes all or nothing; a failed condition becomes 409 with `conflict`.
    pub async fn transact(
        &self,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
        conflict: &str,
    ) -> Result<(), ApiError> {
        self.transact_with(items, |_| ApiError::Conflict(conflict.to_owned()))
            .await
    }

    /// Writes all or nothing; when a condition fails, `on_conflict` gets the index of the
    /// first item whose condition failed and says what to answer.
    pub async fn transact_with(
        &self,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
        on_conflict: impl Fn(usize) -> ApiError,
    ) -> Result<(), ApiError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        match self
            .db
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let failed = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed")),
                    _ => None,
                };
                match failed {
                    Some(index) => Err(on_conflict(index)),
                    None => Err(db_error("TransactWriteItems", e)),
                }
            }
        }
    }
}

/// An update inside a transaction.
pub fn update(
    table: &str,
    key: &Key,
    expression: &str,
    condition: Option<&str>,
    names: &[(&str, &str)],
    values: Vec<(&str, AttributeValue)>,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let mut builder = aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .set_key(Some(key.to_item()))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_owned));
    for (k, v) in names {
        builder = builder.expression_attribute_names(*k, *v);
    }
    for (k, v) in values {
        builder = builder.expression_attribute_values(k, v);
    }
    let update = builder.build().map_err(ApiError::internal)?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .update(update)
        .build())
}

/// A delete inside a transaction (optionally conditional).
pub fn delete(
    table: &str,
    key: &Key,
    condition: Option<&str>,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let delete = aws_sdk_dynamodb::types::Delete::builder()
        .table_name(table)
        .set_key(Some(key.to_item()))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(ApiError::internal)?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .delete(delete)
        .build())
}

/// A put inside a transaction that replaces the item only if `condition` holds.
pub fn put_if(
    table: &str,
    item: Item,
    condition: &str,
    names: &[(&str, &str)],
    values: Vec<(&str, AttributeValue)>,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let mut builder = aws_sdk_dynamodb::types::Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    for (k, v) in names {
        builder = builder.expression_attribute_names(*k, *v);
    }
    for (k, v) in values {
        builder = builder.expression_attribute_values(k, v);
    }
    let put = builder.build().map_err(ApiError::internal)?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .put(put)
        .build())
}

impl Store {
    /// Strongly consistent reads of several items in one `BatchGetItem`, in the order of
    /// `keys` (absent items are `None`). Unprocessed keys are asked for again.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, ApiError> {
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
                    .map_err(ApiError::internal)?;
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
            return Err(ApiError::Unavailable(
                "the database is busy; retry shortly".into(),
            ));
        }
        Ok(keys
            .iter()
            .map(|k| found.get(&(k.pk.clone(), k.sk.clone())).cloned())
            .collect())
    }

    /// Every item of a `gsi1` partition (eventually consistent, as every GSI read).
    pub async fn query_index<T: DeserializeOwned>(&self, gsi1pk: &str) -> Result<Vec<T>, ApiError> {
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

    /// Deletes one item (no error when absent).
    pub async fn delete(&self, key: &Key) -> Result<(), ApiError> {
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
