//! The repository of deliveries (notifications to channels) and of what a delivery changes
//! on its channel.
//!
//! A delivery is a job like a report run, with its own statuses: created `queued` (once per
//! event and channel: its id is derived from both, and the item is written only if absent),
//! claimed by a conditional update that takes a lease (`queued`, `retrying` whose
//! `next_attempt_at` has come, or `sending` whose lease ended → `sending`, `attempts + 1`),
//! and its outcome written only while that lease is held. It is in the `gsi1` due index
//! while it waits: `retrying` at its next attempt, `sending` at its lease's end (the worker
//! may have died), `queued` [`UNDELIVERED_SECS`] after it was queued (the stream delivers
//! it at once; the tick is the fallback). Delivered, failed and suppressed ones leave it.

use super::{db_error, keys, n, s, t, Item, Store, WriteError};
use crate::error::ApiError;
use crate::time::rfc3339;
use chrono::{DateTime, Utc};
use domain::notify::{Delivery, LastDelivery};
use domain::DeliveryStatus;

pub use super::jobs::NotClaimed;

/// How long after it was queued a delivery the worker has not claimed is due for the tick.
pub const UNDELIVERED_SECS: i64 = 120;

pub struct Deliveries<'a>(&'a Store);

impl Store {
    pub fn deliveries(&self) -> Deliveries<'_> {
        Deliveries(self)
    }
}

fn due_id(d: &Delivery) -> String {
    format!("{}#{}", d.company_id, d.id)
}

/// When the tick is to look at a delivery (see the module documentation).
fn due_at(d: &Delivery) -> Option<DateTime<Utc>> {
    match d.status {
        DeliveryStatus::Queued => d
            .next_attempt_at
            .map(|at| at + chrono::Duration::seconds(UNDELIVERED_SECS)),
        DeliveryStatus::Retrying => d.next_attempt_at,
        DeliveryStatus::Sending => d.lease_until,
        _ => None,
    }
}

/// The item of a delivery, in the due index while it waits.
pub fn delivery_item(d: &Delivery) -> Result<Item, ApiError> {
    super::jobs::item(
        &keys::delivery(&d.company_id, &d.id),
        d,
        due_at(d),
        &due_id(d),
    )
}

/// What a finished delivery does to its channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelOutcome {
    pub last: LastDelivery,
    /// Delivered: the failures in a row start again from 0.
    pub delivered: bool,
    /// Disable the channel now with this reason (a 410).
    pub disable: Option<String>,
}

impl Deliveries<'_> {
    /// Writes a new delivery; refused when one with its id exists (the same event was
    /// already delivered to the channel).
    pub async fn create(&self, delivery: &Delivery) -> Result<(), WriteError<()>> {
        let mut tx = self.0.transaction();
        tx.create_item(delivery_item(delivery)?)?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(()),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    pub async fn get(&self, company: &str, id: &str) -> Result<Option<Delivery>, ApiError> {
        self.0.get(keys::delivery(company, id)).await
    }

    /// Every delivery of a company kept at `now`, newest first.
    pub async fn of_company(
        &self,
        company: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, ApiError> {
        let mut all: Vec<Delivery> = self
            .0
            .query_prefix(&keys::company_pk(company), keys::DELIVERY_PREFIX)
            .await?;
        all.retain(|d| d.ttl.is_none_or(|ttl| ttl > now.timestamp()));
        all.reverse();
        Ok(all)
    }

    /// Claims a delivery for an attempt until `lease_until` (see the module documentation);
    /// answers it as claimed.
    pub async fn claim(
        &self,
        company: &str,
        id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Delivery, WriteError<NotClaimed>> {
        crate::held::admitted().await?;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let store = self.0;
        let result = store
            .db
            .update_item()
            .table_name(&store.table)
            .set_key(Some(keys::delivery(company, id).to_item()))
            .update_expression(
                "SET #status = :sending, lease_until = :lease, gsi1pk = :due, gsi1sk = :due_at \
                 ADD attempts :one",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status = :queued \
                 OR (#status = :retrying AND next_attempt_at <= :now) \
                 OR (#status = :sending AND lease_until < :now))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(DeliveryStatus::Sending.as_str()))
            .expression_attribute_values(":queued", s(DeliveryStatus::Queued.as_str()))
            .expression_attribute_values(":retrying", s(DeliveryStatus::Retrying.as_str()))
            .expression_attribute_values(":lease", t(lease_until))
            .expression_attribute_values(":now", t(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":due", s(keys::due_index()))
            .expression_attribute_values(
                ":due_at",
                s(format!("{}#{company}#{id}", rfc3339(lease_until))),
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(super::from_item(out.attributes.unwrap_or_default())?),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Err(WriteError::Refused(match failed.item {
                        Some(_) => NotClaimed::Unavailable,
                        None => NotClaimed::Missing,
                    }))
                }
                _ => Err(WriteError::Failed(db_error("UpdateItem", e))),
            },
        }
    }

    /// Writes an attempt's outcome (the whole delivery) if the lease `held` is still its:
    /// refused when another worker took it over.
    pub async fn finish(
        &self,
        delivery: &Delivery,
        held: DateTime<Utc>,
    ) -> Result<(), WriteError<()>> {
        let mut item = delivery_item(delivery)?;
        item.remove("lease_until");
        super::jobs::finish_if(
            self.0,
            item,
            "#status = :sending AND lease_until = :lease",
            vec![
                (":sending", s(DeliveryStatus::Sending.as_str())),
                (":lease", t(held)),
            ],
        )
        .await
    }

    /// `POST /deliveries/{id}/retry`: a failed delivery is queued again (the same event id,
    /// its attempts counted from 0, its history kept). Answers whether it was failed.
    pub async fn retry(
        &self,
        company: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let due = now + chrono::Duration::seconds(UNDELIVERED_SECS);
        self.0
            .update_if(
                &keys::delivery(company, id),
                "SET #status = :queued, attempts = :zero, next_attempt_at = :now, \
                 gsi1pk = :due, gsi1sk = :due_at REMOVE #error, lease_until",
                "#status = :failed",
                &[("#status", "status"), ("#error", "error")],
                vec![
                    (":queued", s(DeliveryStatus::Queued.as_str())),
                    (":failed", s(DeliveryStatus::Failed.as_str())),
                    (":zero", n(0)),
                    (":now", t(now)),
                    (":due", s(keys::due_index())),
                    (":due_at", s(format!("{}#{company}#{id}", rfc3339(due)))),
                ],
            )
            .await
    }

    /// Counts one delivery on the company's day (`deliveries.perDay`); answers the day's
    /// count with it.
    pub async fn count_today(&self, company: &str, now: DateTime<Utc>) -> Result<i64, ApiError> {
        let day = now.format("%Y-%m-%d").to_string();
        let ttl = now.timestamp() + 3 * 86_400;
        self.0
            .add_to_counter(&keys::delivery_day(company, &day), 1, ttl)
            .await
    }

    /// Records a finished delivery on its channel (without changing the channel's version:
    /// it is not an edit): its last delivery, the failures in a row, and, at
    /// `disable_after` of them or on a 410, the channel disabled with a reason. Answers
    /// whether this disabled it. A deleted channel is left deleted.
    pub async fn record_on_channel(
        &self,
        company: &str,
        channel: &str,
        outcome: &ChannelOutcome,
        disable_after: u32,
    ) -> Result<bool, ApiError> {
        use domain::asset::Kind;
        let key = keys::asset(Kind::Channel, company, channel);
        let last = super::to_attribute("last_delivery", &outcome.last)?;
        if outcome.delivered {
            self.0
                .update_if(
                    &key,
                    "SET last_delivery = :last, consecutive_failures = :zero",
                    "attribute_exists(pk)",
                    &[],
                    vec![(":last", last), (":zero", n(0))],
                )
                .await?;
            return Ok(false);
        }
        crate::held::admitted().await?;
        let out = self
            .0
            .db
            .update_item()
            .table_name(&self.0.table)
            .set_key(Some(key.to_item()))
            .update_expression("SET last_delivery = :last ADD consecutive_failures :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":last", last)
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        let failures = match out {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(|a| super::number(a, "consecutive_failures"))
                .unwrap_or(0),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(db_error("UpdateItem", e)),
        };
        let reason = match &outcome.disable {
            Some(reason) => reason.clone(),
            None if failures >= i64::from(disable_after) => format!(
                "disabled after {failures} failed deliveries in a row; the last: {}",
                outcome
                    .last
                    .response_status
                    .map_or("no answer".to_owned(), |s| format!("HTTP {s}"))
            ),
            None => return Ok(false),
        };
        self.0
            .update_if(
                &key,
                "SET disabled = :yes, disabled_reason = :reason",
                "attribute_exists(pk) AND disabled = :no",
                &[],
                vec![
                    (":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true)),
                    (":no", aws_sdk_dynamodb::types::AttributeValue::Bool(false)),
                    (":reason", s(reason)),
                ],
            )
            .await
    }
}
