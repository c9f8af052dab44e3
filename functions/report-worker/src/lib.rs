//! The **report worker**: the event-driven half of Pulseboard. On AWS it is one Lambda with
//! two triggers, and `pulseboard serve` delivers the same events to [`handle`] locally:
//!
//! - the table's **stream**, through an event source mapping whose filter passes only
//!   inserted jobs in status `queued` — report runs and data source refreshes
//!   ([`stream::passes_filter`] is the same filter, for the local delivery): each is done
//!   exactly once ([`generate`], [`refresh`]), and jobs that hit a transient failure are
//!   returned as batch item failures, for the stream to deliver again;
//! - the **scheduler's tick** (every minute): due schedules become runs, URL data sources
//!   whose `refresh_interval` is due get a refresh job, and jobs whose worker died are taken
//!   over ([`tick`]);
//! - the same stream's **changes of data sources**: when an item's `data_version` went up,
//!   the Klips that use it are recomputed and its appended segments compacted ([`data`]).

pub mod alerts;
pub mod data;
pub mod deliver;
pub mod email;
pub mod error;
pub mod generate;
pub mod refresh;
pub mod report_delivery;
pub mod stream;
pub mod tick;

use platform::AppState;
use serde_json::Value;

/// What the scheduler sends (its target's `Input`).
pub const TICK_INPUT: &str = r#"{"source":"pulseboard.scheduler","tick":true}"#;

/// Handles one invocation: a stream batch (answering the batch item failures) or a tick,
/// with no limit on its time (the local delivery).
pub async fn handle(state: &AppState, event: Value) -> Result<Value, error::WorkError> {
    handle_until(state, event, None).await
}

/// [`handle`] within an invocation's time: `until` is when it runs out (the Lambda
/// context's deadline). A stream batch starts no job after its first once less than
/// [`stream::RESERVE`] is left, and answers the records it did not start as batch item
/// failures, for the stream to deliver again, instead of being stopped in the middle of a
/// job by the function's timeout; a tick leaves the jobs it did not start due for the next
/// tick.
pub async fn handle_until(
    state: &AppState,
    event: Value,
    until: Option<std::time::Instant>,
) -> Result<Value, error::WorkError> {
    let started = std::time::Instant::now();
    // One metric line per invocation (on Lambda): its kind, duration and failures.
    let measured = |kind: &'static str, failures: usize| {
        platform::metrics::emit(|function| {
            platform::metrics::worker_emf(
                function,
                kind,
                started.elapsed().as_secs_f64() * 1000.0,
                failures,
                chrono::Utc::now().timestamp_millis(),
            )
        })
    };
    if event.get("Records").is_some() {
        let batch: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(event)
            .map_err(|e| error::WorkError::fault(format!("not a DynamoDB stream event: {e}")))?;
        let failures = stream::handle(state, batch, until).await;
        measured("stream", failures.len());
        return Ok(serde_json::json!({
            "batchItemFailures": failures
                .into_iter()
                .map(|id| serde_json::json!({"itemIdentifier": id}))
                .collect::<Vec<_>>()
        }));
    }
    if event.get("tick").and_then(Value::as_bool) == Some(true) {
        let done = tick::run(state, until).await;
        measured("tick", usize::from(done.is_err()));
        let done = done?;
        return Ok(serde_json::to_value(done).unwrap_or_default());
    }
    Err(error::WorkError::fault(
        "unknown event: expected a DynamoDB stream batch or a scheduler tick",
    ))
}
