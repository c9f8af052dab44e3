//! The **auth** function (API.md §2, §6): login, refresh (rotation with reuse detection),
//! logout, verify, profile, usage, API keys and `users/{id}/api-key`.

mod keys;
mod session;

use axum::routing::{get, post};
use axum::Router;
use shared::auth::{authenticate, read, write, Guard, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs.
pub const RULES: &[Rule] = &[
    read("/auth/verify"),
    read("/profile"),
    // Never speculative: it reports this very request's counts.
    write("GET", "/usage", None),
    read("/api-keys"),
    write("POST", "/api-keys", Some("api_key.manage")),
    read("/api-keys/{id}"),
    write("DELETE", "/api-keys/{id}", Some("api_key.manage")),
    write("POST", "/api-keys/{id}/rotate", Some("api_key.manage")),
    write("POST", "/users/{id}/api-key", Some("api_key.manage")),
];

/// Routes that need no credentials.
pub const PUBLIC: &[(&str, &str)] = &[
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
];

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/auth/verify", get(session::verify))
        .route("/profile", get(session::profile))
        .route("/usage", get(session::usage))
        .route("/api-keys", get(keys::list).post(keys::create))
        .route("/api-keys/{id}", get(keys::show).delete(keys::revoke))
        .route("/api-keys/{id}/rotate", post(keys::rotate))
        .route("/users/{id}/api-key", post(keys::create_for_user))
        .route_layer(axum::middleware::from_fn_with_state(
            Guard::new(state.clone(), RULES),
            authenticate,
        ));
    Router::new()
        .route("/auth/login", post(session::login))
        .route("/auth/refresh", post(session::refresh))
        .route("/auth/logout", post(session::logout))
        .merge(protected)
        .with_state(state)
}
