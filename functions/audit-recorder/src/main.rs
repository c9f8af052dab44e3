//! The audit recorder Lambda: builds the state once, then records each stream batch (see the
//! library).

use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    platform::memory::configure();
    platform::init_tracing();
    let state = platform::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        pulseboard_audit_recorder::handle(state, event.payload)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
