//! Stream batches: which records are for the worker, and what to do with each.

use crate::generate::{self, Outcome};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use domain::records::Datasource;
use domain::reports::{RefreshJob, Run, REFRESH_ENTITY, RUN_ENTITY};
use domain::RunStatus;
use platform::AppState;
use std::time::{Duration, Instant};

/// The event source mapping's filters, as data (the template's `FilterCriteria` says the
/// same; a record passes when any does): inserted items whose `entity` is a report run or
/// a data source refresh job and whose `status` is `queued`; changed data source items
/// (the worker then looks whether their data changed); removed rate counter items (their
/// time to live passed: the API key uses they held move to the keys' items); and removed
/// report runs (their retention passed: their file is deleted); and deliveries that are
/// `queued`, new or queued again by a retry (their attempt is made); and changed Klips
/// or removed Klips (when their value moved, or the Klip went, their alerts are evaluated).
pub const FILTER_PATTERNS: [&str; 6] = [
    r#"{"eventName":["INSERT"],"dynamodb":{"NewImage":{"entity":{"S":["report_run","datasource_refresh"]},"status":{"S":["queued"]}}}}"#,
    r#"{"eventName":["MODIFY"],"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"DS#"}]}}}}"#,
    r#"{"eventName":["REMOVE"],"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"RATE#"}]}}}}"#,
    r#"{"eventName":["REMOVE"],"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"RUN#"}]}}}}"#,
    r#"{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"entity":{"S":["delivery"]},"status":{"S":["queued"]}}}}"#,
    r#"{"eventName":["MODIFY","REMOVE"],"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"KLIP#"}]}}}}"#,
];

fn key_text<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// A delivery written `queued` (new, or queued again by `POST /deliveries/{id}/retry`).
fn is_queued_delivery(record: &EventRecord) -> bool {
    matches!(record.event_name.as_str(), "INSERT" | "MODIFY")
        && text(record, "entity") == Some(domain::notify::DELIVERY_ENTITY)
        && text(record, "status") == Some(domain::DeliveryStatus::Queued.as_str())
}

/// A change of a Klip's item whose value moved, or its removal (its alerts are evaluated).
fn is_klip_value_change(record: &EventRecord) -> bool {
    is_klip_record(record)
        && crate::alerts::value_moved(&record.change.old_image, &record.change.new_image)
}

/// A change or removal of a Klip's item.
fn is_klip_record(record: &EventRecord) -> bool {
    matches!(record.event_name.as_str(), "MODIFY" | "REMOVE")
        && key_text(record, "sk").is_some_and(|sk| sk.starts_with("KLIP#"))
}

/// A change of a data source's item.
fn is_data_source_change(record: &EventRecord) -> bool {
    record.event_name == "MODIFY" && key_text(record, "sk").is_some_and(|sk| sk.starts_with("DS#"))
}

/// Whether a data source's change is one the worker acts on: its data changed, or it has
/// enough segments to compact.
fn data_changed(record: &EventRecord) -> bool {
    let version = |image: &serde_dynamo::Item| match image.get("data_version") {
        Some(serde_dynamo::AttributeValue::N(n)) => n.parse::<u64>().unwrap_or(0),
        _ => 0,
    };
    let segments = match record.change.new_image.get("segments") {
        Some(serde_dynamo::AttributeValue::L(list)) => list.len(),
        _ => 0,
    };
    version(&record.change.new_image) > version(&record.change.old_image)
        || segments >= platform::assets::ingest::COMPACT_AT
}

/// A rate counter item removed (its time to live passed).
fn is_counter_removal(record: &EventRecord) -> bool {
    record.event_name == "REMOVE"
        && key_text(record, "pk").is_some_and(|pk| pk.starts_with("RATE#"))
}

/// A report run removed (its time to live passed, or its report was deleted).
fn is_run_removal(record: &EventRecord) -> bool {
    record.event_name == "REMOVE" && key_text(record, "sk").is_some_and(|sk| sk.starts_with("RUN#"))
}

/// Deletes the file of a removed run (the kept run, its report's latest succeeded one, has
/// no time to live, so its file stays); deleting a file that is gone already is no error.
async fn delete_run_file(state: &AppState, record: &EventRecord) -> Outcome {
    let Some(serde_dynamo::AttributeValue::S(key)) = record.change.old_image.get("file_key") else {
        return Outcome::Done;
    };
    match state.store.files().delete(key).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// Moves the API key uses a removed day counter item held into the keys' own items.
async fn fold_key_uses(state: &AppState, record: &EventRecord) -> Outcome {
    let company = key_text(record, "pk").and_then(|pk| pk.strip_prefix("RATE#"));
    let day = key_text(record, "sk")
        .and_then(|sk| sk.strip_prefix("D#"))
        .and_then(|d| d.parse::<chrono::NaiveDate>().ok());
    let (Some(company), Some(day)) = (company, day) else {
        tracing::error!("a removed rate counter item has an unexpected key; skipped");
        return Outcome::Done;
    };
    let image: platform::store::Item = record.change.old_image.clone().into();
    for (key_id, uses) in platform::store::counters::key_uses_of(&image) {
        if uses.count == 0 {
            continue;
        }
        let folded = state
            .store
            .api_keys()
            .fold_day(company, &key_id, day, uses.count, uses.last)
            .await;
        if let Err(error) = folded {
            // Days already folded stay folded: the markers make the retry skip them.
            return Outcome::Retry(error.to_string());
        }
    }
    Outcome::Done
}

fn text<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.new_image.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// A record whose item does not decode: logged and skipped (delivering it again would not
/// help).
fn skipped(what: &str, error: serde_dynamo::Error) -> Outcome {
    tracing::error!(%error, "{what}'s item does not decode; skipped");
    Outcome::Done
}

/// The time a batch keeps for the job it is doing: no job starts after the first once less
/// than this is left of the invocation (the worker's timeout is 150 s; a report over a large
/// source takes seconds at its 512 MB).
pub const RESERVE: Duration = Duration::from_secs(20);

/// Whether the record passes [`FILTER_PATTERNS`].
pub fn passes_filter(record: &EventRecord) -> bool {
    let queued_job = record.event_name == "INSERT"
        && matches!(text(record, "entity"), Some(RUN_ENTITY | REFRESH_ENTITY))
        && text(record, "status") == Some(RunStatus::Queued.as_str());
    queued_job
        || is_queued_delivery(record)
        || is_klip_record(record)
        || is_data_source_change(record)
        || is_counter_removal(record)
        || is_run_removal(record)
}

/// Does the job of each record (a report run, a data source refresh or change, a removed
/// rate counter); answers the
/// sequence numbers of the records to deliver again (transient failures, and the records
/// not started because less than [`RESERVE`] was left before `until`). A record that is
/// not a queued job is skipped.
pub async fn handle(state: &AppState, batch: Event, until: Option<Instant>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut done_sources: Vec<((String, String), Outcome)> = Vec::new();
    let mut klips = ChangedKlips::default();
    let mut started = false;
    for record in batch.records.iter().filter(|r| passes_filter(r)) {
        // Out of time: this record and the rest go back to the stream (the first always
        // starts, so every invocation moves on).
        let left = until.map(|until| until.saturating_duration_since(Instant::now()));
        if started && left.is_some_and(|left| left < RESERVE) {
            if let Some(sequence) = &record.change.sequence_number {
                failures.push(sequence.clone());
            }
            continue;
        }
        started = true;
        if klips.note(record) {
            continue;
        }
        let Some(outcome) = act(state, record, &mut done_sources).await else {
            continue;
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
    failures.extend(klips.evaluate(state).await);
    failures
}

/// How many Klips' alerts a batch evaluates at once.
const KLIPS_AT_ONCE: usize = 4;

/// The Klips whose value moved (or that went) in a batch, each once with the sequence
/// numbers of its records: their alerts are evaluated after the batch's other work, several
/// Klips at once (each evaluation reads the Klip as it is then, so one per batch suffices).
#[derive(Default)]
struct ChangedKlips(Vec<((String, String), Vec<String>)>);

impl ChangedKlips {
    /// Notes the record if it is a Klip's value change (or removal); answers whether it was.
    fn note(&mut self, record: &EventRecord) -> bool {
        if !is_klip_record(record) {
            return false;
        }
        let company = key_text(record, "pk").and_then(|pk| pk.strip_prefix("C#"));
        let klip = key_text(record, "sk").and_then(|sk| sk.strip_prefix("KLIP#"));
        let (Some(company), Some(klip)) = (company, klip) else {
            return true;
        };
        if !is_klip_value_change(record) {
            return true;
        }
        let key = (company.to_owned(), klip.to_owned());
        let sequence = record.change.sequence_number.clone();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sequences)) => sequences.extend(sequence),
            None => self.0.push((key, sequence.into_iter().collect())),
        }
        true
    }

    /// Evaluates each Klip's alerts; answers the sequence numbers to deliver again.
    async fn evaluate(self, state: &AppState) -> Vec<String> {
        use futures::StreamExt;
        let mut evaluations = Vec::with_capacity(self.0.len());
        for ((company, klip), _) in &self.0 {
            evaluations.push(crate::alerts::on_klip_change(state, company, klip));
        }
        let outcomes: Vec<Outcome> = futures::stream::iter(evaluations)
            .buffered(KLIPS_AT_ONCE)
            .collect()
            .await;
        let mut failures = Vec::new();
        for ((_, sequences), outcome) in self.0.into_iter().zip(outcomes) {
            if let Outcome::Retry(error) = outcome {
                tracing::warn!(%error, "a Klip's alerts returned to the stream for a retry");
                failures.extend(sequences);
            }
        }
        failures
    }
}

/// What one record asks for, done; `None` for a record with nothing to do.
async fn act(
    state: &AppState,
    record: &EventRecord,
    done_sources: &mut Vec<((String, String), Outcome)>,
) -> Option<Outcome> {
    let image = record.change.new_image.clone();
    Some(if is_counter_removal(record) {
        fold_key_uses(state, record).await
    } else if is_run_removal(record) {
        delete_run_file(state, record).await
    } else if is_data_source_change(record) {
        if !data_changed(record) {
            return None;
        }
        match serde_dynamo::from_item::<_, Datasource>(image) {
            Ok(ds) => {
                // One recompute per data source and batch, however many of its changes
                // the batch holds (it reads the source as it is now).
                let source = (ds.meta.company_id, ds.meta.id);
                let outcome = match done_sources.iter().find(|(s, _)| *s == source) {
                    Some((_, outcome)) => outcome.clone(),
                    None => {
                        let outcome = crate::data::run(state, &source.0, &source.1).await;
                        done_sources.push((source, outcome.clone()));
                        outcome
                    }
                };
                outcome
            }
            Err(e) => {
                tracing::error!(error = %e, "a data source's item does not decode; skipped");
                return None;
            }
        }
    } else if is_queued_delivery(record) {
        match serde_dynamo::from_item::<_, domain::notify::Delivery>(image) {
            Ok(d) => crate::deliver::run(state, &d.company_id, &d.id).await,
            Err(e) => skipped("a queued delivery", e),
        }
    } else if text(record, "entity") == Some(REFRESH_ENTITY) {
        match serde_dynamo::from_item::<_, RefreshJob>(image) {
            Ok(job) => {
                crate::refresh::run(state, &job.company_id, &job.datasource_id, &job.id).await
            }
            Err(e) => skipped("a queued refresh", e),
        }
    } else {
        match serde_dynamo::from_item::<_, Run>(image) {
            Ok(run) => generate::run(state, &run.company_id, &run.report_id, &run.id).await,
            Err(e) => skipped("a queued run", e),
        }
    })
}
