//! The routes `pulseboard serve` mounts: every function's router behind the shared edge, as
//! API Gateway routes them. Tests serve exactly this.

use shared::AppState;

pub fn all_routes(state: AppState) -> axum::Router {
    shared::http::app(
        pulseboard_auth::router(state.clone())
            .merge(pulseboard_users::router(state.clone()))
            .merge(pulseboard_clients::router(state.clone()))
            .merge(pulseboard_datasources::router(state.clone()))
            .merge(pulseboard_klips::router(state.clone()))
            .merge(pulseboard_dashboards::router(state)),
    )
}
