//! The notifications Lambda: builds the state once, then serves the router on `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    platform::memory::configure();
    platform::init_tracing();
    let state = platform::AppState::from_env().await?;
    lambda_http::run(platform::http::app(pulseboard_notifications::router(state))).await
}
