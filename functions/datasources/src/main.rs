//! The datasources Lambda: builds the state once, then serves the router on `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_tracing();
    let state = shared::AppState::from_env().await?;
    lambda_http::run(shared::http::app(pulseboard_datasources::router(state))).await
}
