//! Stream batches: which records are for the worker, and what to do with each.

use crate::generate::{self, Outcome};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use domain::reports::{Run, RUN_ENTITY};
use domain::RunStatus;
use platform::AppState;

/// The event source mapping's filter, as data (the template's `FilterCriteria` says the
/// same): inserted items whose `entity` is a report run and whose `status` is `queued`.
pub const FILTER_PATTERN: &str = r#"{"eventName":["INSERT"],"dynamodb":{"NewImage":{"entity":{"S":["report_run"]},"status":{"S":["queued"]}}}}"#;

fn text<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.new_image.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Whether the record passes [`FILTER_PATTERN`].
pub fn passes_filter(record: &EventRecord) -> bool {
    record.event_name == "INSERT"
        && text(record, "entity") == Some(RUN_ENTITY)
        && text(record, "status") == Some(RunStatus::Queued.as_str())
}

/// Generates the run of each record; answers the sequence numbers of the records to deliver
/// again (transient failures). A record that is not a queued run is skipped.
pub async fn handle(state: &AppState, batch: Event) -> Vec<String> {
    let mut failures = Vec::new();
    for record in batch.records.iter().filter(|r| passes_filter(r)) {
        let run: Run = match serde_dynamo::from_item(record.change.new_image.clone()) {
            Ok(run) => run,
            Err(e) => {
                tracing::error!(error = %e, "a queued run's item does not decode; skipped");
                continue;
            }
        };
        match generate::run(state, &run.company_id, &run.report_id, &run.id).await {
            Outcome::Done => {}
            Outcome::Retry(error) => {
                tracing::warn!(run = %run.id, %error, "returned to the stream for a retry");
                if let Some(sequence) = &record.change.sequence_number {
                    failures.push(sequence.clone());
                }
            }
        }
    }
    failures
}
