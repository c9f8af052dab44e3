//! What every background job item (a report run, a data source refresh) shares: a lease
//! taken by a conditional update, so that exactly one worker works on a job at a time; the
//! due index entry of a running job at its lease's end, so the scheduler's tick finds a job
//! whose worker died, and of a queued job [`UNDELIVERED_SECS`] after it was queued, so the
//! tick also does a job whose stream record never reached the worker (it went to the
//! failure queue); and an end written only while the lease is still held.

use super::StoreError;
use super::{db_error, keys, s, t, to_item, Item, Key, Store, WriteError};
use crate::time::rfc3339;
use chrono::{DateTime, Utc};
use domain::reports::JobState;
use domain::RunStatus;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a job could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotClaimed {
    /// It is done, or another worker holds a live lease on it.
    Unavailable,
    /// Gone.
    Missing,
}

/// How long after it was queued a job the worker has not claimed is due for the scheduler's
/// tick. The stream delivers a queued job within seconds; one whose record failed every
/// delivery (it went to the failure queue) or was lost would otherwise stay `queued` for
/// good. A job the stream delivers after the tick took it finds nothing to claim.
pub const UNDELIVERED_SECS: i64 = 600;

/// When the scheduler's tick is to look at a job: a running one at its lease's end (its
/// worker may have died), a queued one [`UNDELIVERED_SECS`] after it was queued; a finished
/// one never.
pub(super) fn due_at(job: &JobState) -> Option<DateTime<Utc>> {
    match job.status {
        RunStatus::Running => job.lease_until,
        RunStatus::Queued => Some(job.date_created + chrono::Duration::seconds(UNDELIVERED_SECS)),
        _ => None,
    }
}

/// The item of a job; with a due time (see [`due_at`]) it is in the due index then, under
/// `due_id`.
pub(super) fn item<T: Serialize>(
    key: &Key,
    job: &T,
    due: Option<DateTime<Utc>>,
    due_id: &str,
) -> Result<Item, StoreError> {
    let mut item = to_item(key, job)?;
    if let Some(due) = due {
        item.insert("gsi1pk".into(), s(keys::due_index()));
        item.insert("gsi1sk".into(), s(format!("{}#{due_id}", rfc3339(due))));
    }
    Ok(item)
}

/// Claims the job at `key` until `lease_until`: a queued one, or a running one whose lease
/// ended before `now`, with fewer than `max_attempts` attempts. Answers it as claimed.
pub(super) async fn claim<T: DeserializeOwned>(
    store: &Store,
    key: &Key,
    due_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    max_attempts: u32,
) -> Result<T, WriteError<NotClaimed>> {
    // A held handler writes only once admitted (see crate::held).
    crate::held::admitted().await?;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
    let result = store
        .db
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key.to_item()))
        .update_expression(
            "SET #status = :running, lease_until = :lease, started_at = if_not_exists(started_at, :now), \
             gsi1pk = :due, gsi1sk = :due_at ADD attempt :one",
        )
        .condition_expression(
            "attribute_exists(pk) AND attempt < :max AND (#status = :queued OR (#status = :running AND lease_until < :now))",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":running", s(RunStatus::Running.as_str()))
        .expression_attribute_values(":queued", s(RunStatus::Queued.as_str()))
        .expression_attribute_values(":lease", t(lease_until))
        .expression_attribute_values(":now", t(now))
        .expression_attribute_values(":one", super::n(1))
        .expression_attribute_values(":max", super::n(max_attempts))
        .expression_attribute_values(":due", s(keys::due_index()))
        .expression_attribute_values(":due_at", s(format!("{}#{due_id}", rfc3339(lease_until))))
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

/// Writes a job's end (its whole item) if the lease `held` is still the job's: refused when
/// another worker took it over.
pub(super) async fn finish(
    store: &Store,
    item: Item,
    held: DateTime<Utc>,
) -> Result<(), WriteError<()>> {
    finish_with(store, item, held, Vec::new()).await
}

/// [`finish`], creating `created` (new items, such as a run's deliveries) in the same
/// transaction: all of them are written with the job's end, or none.
pub(super) async fn finish_with(
    store: &Store,
    item: Item,
    held: DateTime<Utc>,
    created: Vec<Item>,
) -> Result<(), WriteError<()>> {
    let mut tx = store.transaction();
    tx.put_item_if(
        item,
        "#status = :running AND lease_until = :lease",
        &[("#status", "status")],
        vec![
            (":running", s(RunStatus::Running.as_str())),
            (":lease", t(held)),
        ],
    )?;
    for item in created {
        tx.create_item(item)?;
    }
    tx.commit().await.map_err(|e| match e {
        WriteError::Refused(_) => WriteError::Refused(()),
        WriteError::Failed(e) => WriteError::Failed(e),
    })
}

/// Ends the lease now, so the next delivery (or the tick) can claim the job again.
pub(super) async fn release(
    store: &Store,
    key: &Key,
    due_id: &str,
    held: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store
        .update_if(
            key,
            "SET lease_until = :now, gsi1sk = :due_at",
            "#status = :running AND lease_until = :lease",
            &[("#status", "status")],
            vec![
                (":now", t(now)),
                (":due_at", s(format!("{}#{due_id}", rfc3339(now)))),
                (":running", s(RunStatus::Running.as_str())),
                (":lease", t(held)),
            ],
        )
        .await
        .map(|_| ())
}

/// Fails a job nobody can finish any more (its last attempt's lease ended).
pub(super) async fn abandon(
    store: &Store,
    key: &Key,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    store
        .update_if(
            key,
            "SET #status = :failed, #error = :error, finished_at = :now REMOVE gsi1pk, gsi1sk",
            "#status = :running AND lease_until < :now",
            &[("#status", "status"), ("#error", "error")],
            vec![
                (":failed", s(RunStatus::Failed.as_str())),
                (":error", s(error)),
                (":now", t(now)),
                (":running", s(RunStatus::Running.as_str())),
            ],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::reports::{RefreshJob, Report, Run};
    use domain::RunTrigger;

    /// A job's state is stored as fields of its item, as before `JobState` gathered them:
    /// the same attribute names and types, and the item reads back as it was written.
    #[test]
    fn a_jobs_state_is_stored_as_fields_of_its_item() {
        let now = "2026-12-02T09:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let report: Report = serde_json::from_value(serde_json::json!({
            "meta": {"id": "r", "company_id": "c", "name": "R", "slug": "r", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "format": "html"
        }))
        .unwrap();
        let mut run = Run::queued("x".into(), &report, RunTrigger::Schedule, now, None);
        run.job.status = RunStatus::Running;
        run.job.attempt = 2;
        run.job.lease_until = Some(now);
        run.job.ttl = Some(1_800_000_000);
        let item = to_item(&Key::new("pk", "sk"), &run).unwrap();
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};
        assert_eq!(item.get("status"), Some(&S("running".into())));
        assert_eq!(item.get("attempt"), Some(&N("2".into())));
        assert_eq!(item.get("ttl"), Some(&N("1800000000".into())));
        assert_eq!(
            item.get("lease_until"),
            Some(&S("2026-12-02T09:00:00Z".into()))
        );
        assert!(!item.contains_key("job") && !item.contains_key("finished_at"));
        let back: Run = crate::store::from_item(item).unwrap();
        assert_eq!(back, run);
        let job = RefreshJob::queued("j".into(), "c", "d", RunTrigger::Api, now);
        let back: RefreshJob =
            crate::store::from_item(to_item(&Key::new("pk", "sk"), &job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(
            due_at(&job.job),
            Some(now + chrono::Duration::seconds(UNDELIVERED_SECS))
        );
    }
}
