//! The **auth** function (API.md §2, §6): login, refresh (rotation with reuse detection),
//! logout, verify, profile, usage, API keys and `users/{id}/api-key`.

mod keys;
mod session;

use axum::routing::{get, post};
use axum::Router;
use shared::auth::{read, write, FunctionRoutes, Rule};
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
    ("POST", "/auth/reset-password"),
];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .with_public(PUBLIC)
        .public("/auth/login", post(session::login))
        .public("/auth/refresh", post(session::refresh))
        .public("/auth/logout", post(session::logout))
        .public("/auth/reset-password", post(session::reset_password))
        .protected("/auth/verify", get(session::verify))
        .protected("/profile", get(session::profile))
        .protected("/usage", get(session::usage))
        .protected("/api-keys", get(keys::list).post(keys::create))
        .protected("/api-keys/{id}", get(keys::show).delete(keys::revoke))
        .protected("/api-keys/{id}/rotate", post(keys::rotate))
        .protected("/users/{id}/api-key", post(keys::create_for_user))
        .build()
}
