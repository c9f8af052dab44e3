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

use super::StoreError;
use super::{db_error, keys, n, s, t, Item, Store, WriteError};
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
pub fn delivery_item(d: &Delivery) -> Result<Item, StoreError> {
    super::jobs::item(
        &keys::delivery(&d.company_id, &d.id),
        d,
        due_at(d),
        &due_id(d),
    )
}

/// One conditional update of a channel, in the transaction that finishes a delivery.
#[derive(Clone)]
struct ChannelWrite<'a> {
    key: &'a super::Key,
    expression: &'static str,
    condition: &'static str,
    values: Vec<(&'static str, aws_sdk_dynamodb::types::AttributeValue)>,
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

/// What a delivery list keeps: not expired, and the filters given.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub channel_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub kind: Option<domain::DeliveryKind>,
}

/// A page of deliveries, newest first, and how many there are in all.
#[derive(Debug)]
pub struct Page {
    pub deliveries: Vec<Delivery>,
    pub total: usize,
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

    pub async fn get(&self, company: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.0.get(keys::delivery(company, id)).await
    }

    /// `skip` to `skip + take` of a company's deliveries kept at `now` that `shown` keeps,
    /// newest first: one `Query` backwards over the company's delivery range (delivery ids
    /// sort by time) reading the page and what it skips, and a `Select=COUNT` of the same
    /// range for the total, at the same time.
    pub async fn page(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
        skip: usize,
        take: usize,
    ) -> Result<Page, StoreError> {
        let (deliveries, total) = tokio::try_join!(
            self.read(company, shown, now, skip.saturating_add(take)),
            self.count(company, shown, now)
        )?;
        Ok(Page {
            deliveries: deliveries.into_iter().skip(skip).take(take).collect(),
            total,
        })
    }

    fn query(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let store = self.0;
        let mut filter = "(attribute_not_exists(#ttl) OR #ttl > :now)".to_owned();
        let mut query = store
            .db
            .query()
            .table_name(&store.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pk", s(keys::company_pk(company)))
            .expression_attribute_values(":prefix", s(keys::DELIVERY_PREFIX))
            .expression_attribute_values(":now", n(now.timestamp()))
            .consistent_read(true);
        if let Some(channel) = &shown.channel_id {
            filter.push_str(" AND channel_id = :channel");
            query = query.expression_attribute_values(":channel", s(channel.as_str()));
        }
        if let Some(status) = shown.status {
            filter.push_str(" AND #status = :status");
            query = query
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()));
        }
        if let Some(kind) = shown.kind {
            filter.push_str(" AND #kind = :kind");
            query = query
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(kind.as_str()));
        }
        query.filter_expression(filter)
    }

    /// The first `wanted` deliveries `shown` keeps, newest first.
    async fn read(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
        wanted: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        Store::newest_matching(|| self.query(company, shown, now), wanted).await
    }

    async fn count(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        Store::count_matching(|| self.query(company, shown, now)).await
    }

    /// Every delivery of a company kept at `now`, newest first.
    pub async fn of_company(
        &self,
        company: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
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

    /// Writes an attempt's outcome (the whole delivery) if the lease `held` is still its,
    /// refused when another worker took it over; with `channel`, what a finished delivery
    /// does to its channel, in the same transaction, so whoever reads the delivery's end
    /// reads the channel's too: its last delivery, its failures in a row, and, at the
    /// `disable_after`th of them or on a 410, the channel disabled with a reason (without
    /// changing its version: it is not an edit; a deleted channel stays deleted). Answers
    /// whether this disabled the channel.
    pub async fn finish(
        &self,
        delivery: &Delivery,
        held: DateTime<Utc>,
        channel: Option<(&ChannelOutcome, u32)>,
    ) -> Result<bool, WriteError<()>> {
        let Some((outcome, disable_after)) = channel else {
            return self.finish_alone(delivery, held).await;
        };
        let key = keys::asset(
            domain::asset::Kind::Channel,
            &delivery.company_id,
            &delivery.channel_id,
        );
        let last = super::to_attribute("last_delivery", &outcome.last)?;
        let below = i64::from(disable_after.max(1)) - 1;
        let reason = outcome.disable.clone().unwrap_or_else(|| {
            format!(
                "disabled after {disable_after} failed deliveries in a row; the last: {}",
                outcome
                    .last
                    .response_status
                    .map_or("no answer".to_owned(), |s| format!("HTTP {s}"))
            )
        });
        let counted = ChannelWrite {
            key: &key,
            expression: "SET last_delivery = :last ADD consecutive_failures :one",
            condition: "attribute_exists(pk) AND (attribute_not_exists(consecutive_failures) \
                        OR consecutive_failures < :below)",
            values: vec![
                (":last", last.clone()),
                (":one", n(1)),
                (":below", n(below)),
            ],
        };
        let disabling = ChannelWrite {
            key: &key,
            expression: "SET last_delivery = :last, disabled = :yes, disabled_reason = :reason \
                         ADD consecutive_failures :one",
            condition: "attribute_exists(pk)",
            values: vec![
                (":last", last.clone()),
                (":one", n(1)),
                (":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true)),
                (":reason", s(reason)),
            ],
        };
        let tries = if outcome.delivered {
            vec![ChannelWrite {
                key: &key,
                expression: "SET last_delivery = :last, consecutive_failures = :zero",
                condition: "attribute_exists(pk)",
                values: vec![(":last", last), (":zero", n(0))],
            }]
        } else if outcome.disable.is_some() {
            vec![disabling]
        } else {
            vec![counted, disabling]
        };
        let last_try = tries.len() - 1;
        for (i, write) in tries.into_iter().enumerate() {
            let disables = write.expression.contains("disabled = :yes");
            match self.finish_with(delivery, held, Some(write)).await {
                Ok(()) => return Ok(disables),
                // The channel's condition failed: the next way, or (deleted) none.
                Err(WriteError::Refused(1)) if i < last_try => continue,
                Err(WriteError::Refused(1)) => return self.finish_alone(delivery, held).await,
                Err(WriteError::Refused(_)) => return Err(WriteError::Refused(())),
                Err(WriteError::Failed(e)) => return Err(WriteError::Failed(e)),
            }
        }
        Ok(false)
    }

    /// The delivery's item alone, if the lease is held.
    async fn finish_alone(
        &self,
        delivery: &Delivery,
        held: DateTime<Utc>,
    ) -> Result<bool, WriteError<()>> {
        match self.finish_with(delivery, held, None).await {
            Ok(()) => Ok(false),
            Err(WriteError::Refused(_)) => Err(WriteError::Refused(())),
            Err(WriteError::Failed(e)) => Err(WriteError::Failed(e)),
        }
    }

    /// The delivery's item if the lease is held, one update of its channel, and its status
    /// on its run (a report's delivery), all together; without the run's step when the run
    /// is gone (its report was deleted).
    async fn finish_with(
        &self,
        delivery: &Delivery,
        held: DateTime<Utc>,
        channel: Option<ChannelWrite<'_>>,
    ) -> Result<(), WriteError<usize>> {
        let run = match (&delivery.source.report_id, &delivery.source.run_id) {
            (Some(report), Some(run)) => Some(keys::run(&delivery.company_id, report, run)),
            _ => None,
        };
        let mut item = delivery_item(delivery)?;
        item.remove("lease_until");
        let attempt = |with_run: bool| {
            let mut tx = self.0.transaction();
            tx.put_item_if(
                item.clone(),
                "#status = :sending AND lease_until = :lease",
                &[("#status", "status")],
                vec![
                    (":sending", s(DeliveryStatus::Sending.as_str())),
                    (":lease", t(held)),
                ],
            )?;
            if let Some(write) = channel.clone() {
                tx.update(
                    write.key,
                    write.expression,
                    Some(write.condition),
                    write.values,
                )?;
            }
            let mut run_step = None;
            if let (Some(run), true) = (&run, with_run) {
                run_step = Some(tx.update_named(
                    run,
                    "SET deliveries.#channel.#status = :status",
                    Some("attribute_exists(deliveries.#channel)"),
                    &[
                        ("#channel", delivery.channel_id.as_str()),
                        ("#status", "status"),
                    ],
                    vec![(":status", s(delivery.status.as_str()))],
                )?);
            }
            Ok::<_, StoreError>((tx, run_step))
        };
        let (tx, run_step) = attempt(true)?;
        match tx.commit().await {
            Err(WriteError::Refused(i)) if Some(i) == run_step => attempt(false)?.0.commit().await,
            other => other,
        }
    }

    /// `POST /deliveries/{id}/retry`: a failed delivery is queued again (the same event id,
    /// its attempts counted from 0, its history kept). Answers whether it was failed.
    pub async fn retry(
        &self,
        company: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
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
    pub async fn count_today(&self, company: &str, now: DateTime<Utc>) -> Result<i64, StoreError> {
        // The same day as the API's daily limit: New York's.
        let day = crate::time::NewYorkDay::containing(now).date.to_string();
        let ttl = now.timestamp() + 3 * 86_400;
        self.0
            .add_to_counter(&keys::delivery_day(company, &day), 1, ttl)
            .await
    }
}
