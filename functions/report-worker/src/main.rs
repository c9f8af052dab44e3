//! The report worker Lambda: builds the state once, then handles stream batches and
//! scheduler ticks (see the library).

use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    platform::memory::configure();
    platform::init_tracing();
    let state = platform::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The invocation's deadline, as a monotonic instant.
        let left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let until = std::time::Instant::now() + left;
        pulseboard_report_worker::handle_until(state, event.payload, Some(until))
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
