//! The repository of alert evaluations and events. An alert is an asset (its edits go
//! through the asset store, conditional on its `version`); an evaluation writes only the
//! alert's state fields and moves its `version` on (what the alert shows changed, so its
//! ETag does), conditional on the `revision` and `version` it read, together with the event
//! it records and the deliveries it makes: two evaluations of the same change cannot both
//! fire, an evaluation never overwrites an edit, and an edit made from an alert read before
//! an evaluation is refused (412) instead of putting back the state it read.

use super::StoreError;
use super::{keys, n, s, t, to_item, Store, WriteError};
use aws_sdk_dynamodb::types::AttributeValue;
use domain::alerts::{Alert, AlertEvent};
use domain::asset::Kind;
use domain::notify::Delivery;

pub struct Alerts<'a>(&'a Store);

impl Store {
    pub fn alerts(&self) -> Alerts<'_> {
        Alerts(self)
    }
}

/// How long an alert's events are kept.
pub const EVENT_RETENTION_SECS: i64 = 90 * 24 * 3600;

fn optional_time(value: Option<chrono::DateTime<chrono::Utc>>) -> AttributeValue {
    value.map_or(AttributeValue::Null(true), t)
}

impl Alerts<'_> {
    /// Writes an evaluation of `old` (as read): `new`'s state fields, `event` and
    /// `deliveries`, all or nothing; refused when another evaluation moved the alert's
    /// revision on first, or the alert was deleted.
    pub async fn record(
        &self,
        old: &Alert,
        new: &Alert,
        event: Option<&AlertEvent>,
        deliveries: &[Delivery],
    ) -> Result<(), WriteError<()>> {
        let meta = &old.meta;
        let mut tx = self.0.transaction();
        tx.update_named(
            &keys::asset(Kind::Alert, &meta.company_id, &meta.id),
            "SET #state = :state, state_reason = :reason, last_value = :value, \
             last_evaluated_at = :evaluated, last_fired_at = :fired, paused = :paused, \
             revision = :next, #meta.#version = :next_version",
            Some(
                "attribute_exists(pk) AND #meta.#version = :version AND (revision = :revision \
                 OR (attribute_not_exists(revision) AND :revision = :zero))",
            ),
            &[
                ("#state", "state"),
                ("#meta", "meta"),
                ("#version", "version"),
            ],
            vec![
                (":state", s(new.state.as_str())),
                (
                    ":reason",
                    new.state_reason
                        .clone()
                        .map_or(AttributeValue::Null(true), s),
                ),
                (
                    ":value",
                    new.last_value.map_or(AttributeValue::Null(true), n),
                ),
                (":evaluated", optional_time(new.last_evaluated_at)),
                (":fired", optional_time(new.last_fired_at)),
                (":paused", AttributeValue::Bool(new.paused)),
                (":next", n(new.revision)),
                (":revision", n(old.revision)),
                (":version", n(old.meta.version)),
                (":next_version", n(old.meta.version + 1)),
                (":zero", n(0)),
            ],
        )?;
        if let Some(event) = event {
            tx.create_item(to_item(
                &keys::alert_event(&meta.company_id, &meta.id, &event.id),
                event,
            )?)?;
        }
        for delivery in deliveries {
            tx.create_item(super::deliveries::delivery_item(delivery)?)?;
        }
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(()),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// The alerts watching the Klip `klip`: one query of its watchers in the `gsi1` index
    /// (eventually consistent: an evaluation writes conditional on the revision it read, so
    /// a stale copy is refused and read again).
    pub async fn watching(&self, company: &str, klip: &str) -> Result<Vec<Alert>, StoreError> {
        self.0
            .query_index(&keys::klip_watchers(company, klip))
            .await
    }

    /// An alert's events kept at `now`, newest first.
    pub async fn events(
        &self,
        company: &str,
        alert: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let mut all: Vec<AlertEvent> = self
            .0
            .query_prefix(&keys::company_pk(company), &keys::alert_events_of(alert))
            .await?;
        all.retain(|e| e.ttl.is_none_or(|ttl| ttl > now.timestamp()));
        all.reverse();
        Ok(all)
    }
}
