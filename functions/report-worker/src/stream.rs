//! Stream batches: which records are for the worker, and what to do with each.

use crate::generate::{self, Outcome};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use domain::reports::{RefreshJob, Run, REFRESH_ENTITY, RUN_ENTITY};
use domain::RunStatus;
use platform::AppState;

/// The event source mapping's filter, as data (the template's `FilterCriteria` says the
/// same): inserted items whose `entity` is a report run or a data source refresh job and
/// whose `status` is `queued`.
pub const FILTER_PATTERN: &str = r#"{"eventName":["INSERT"],"dynamodb":{"NewImage":{"entity":{"S":["report_run","datasource_refresh"]},"status":{"S":["queued"]}}}}"#;

fn text<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.new_image.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Whether the record passes [`FILTER_PATTERN`].
pub fn passes_filter(record: &EventRecord) -> bool {
    record.event_name == "INSERT"
        && matches!(text(record, "entity"), Some(RUN_ENTITY | REFRESH_ENTITY))
        && text(record, "status") == Some(RunStatus::Queued.as_str())
}

/// Does the job of each record (a report run or a data source refresh); answers the
/// sequence numbers of the records to deliver again (transient failures). A record that is
/// not a queued job is skipped.
pub async fn handle(state: &AppState, batch: Event) -> Vec<String> {
    let mut failures = Vec::new();
    for record in batch.records.iter().filter(|r| passes_filter(r)) {
        let image = record.change.new_image.clone();
        let outcome = if text(record, "entity") == Some(REFRESH_ENTITY) {
            match serde_dynamo::from_item::<_, RefreshJob>(image) {
                Ok(job) => {
                    crate::refresh::run(state, &job.company_id, &job.datasource_id, &job.id).await
                }
                Err(e) => {
                    tracing::error!(error = %e, "a queued refresh's item does not decode; skipped");
                    continue;
                }
            }
        } else {
            match serde_dynamo::from_item::<_, Run>(image) {
                Ok(run) => generate::run(state, &run.company_id, &run.report_id, &run.id).await,
                Err(e) => {
                    tracing::error!(error = %e, "a queued run's item does not decode; skipped");
                    continue;
                }
            }
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Retry(error) => {
                tracing::warn!(%error, "returned to the stream for a retry");
                if let Some(sequence) = &record.change.sequence_number {
                    failures.push(sequence.clone());
                }
            }
        }
    }
    failures
}
