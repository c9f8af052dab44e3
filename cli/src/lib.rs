//! The routes `pulseboard serve` mounts: every function's router behind the shared edge, as
//! API Gateway routes them. Tests serve exactly this.

pub mod events;
pub mod listener;
pub mod runtime_api;
pub mod s3_server;

use platform::AppState;

/// Every function, in the order API Gateway's `$default` route falls back (auth first).
pub const FUNCTIONS: &[platform::routes::Function] = &[
    pulseboard_auth::FUNCTION,
    pulseboard_users::FUNCTION,
    pulseboard_clients::FUNCTION,
    pulseboard_datasources::FUNCTION,
    pulseboard_klips::FUNCTION,
    pulseboard_dashboards::FUNCTION,
    pulseboard_reports::FUNCTION,
    pulseboard_notifications::FUNCTION,
];

pub fn all_routes(state: AppState) -> axum::Router {
    // One process stands in for every function: the longest function budget applies
    // (the datasources function's, see template.yaml) unless REQUEST_DEADLINE_MS says.
    let deadline = std::env::var("REQUEST_DEADLINE_MS")
        .ok()
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(
            std::time::Duration::from_secs(26),
            std::time::Duration::from_millis,
        );
    platform::http::app_with_deadline(
        pulseboard_auth::router(state.clone())
            .merge(pulseboard_users::router(state.clone()))
            .merge(pulseboard_clients::router(state.clone()))
            .merge(pulseboard_datasources::router(state.clone()))
            .merge(pulseboard_klips::router(state.clone()))
            .merge(pulseboard_dashboards::router(state.clone()))
            .merge(pulseboard_reports::router(state.clone()))
            .merge(pulseboard_notifications::router(state)),
        deadline,
    )
}

/// Ctrl-C or SIGTERM: either stops the server, and then the local stack it started.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
