//! The **auth** function (API.md §2, §6): login, refresh (rotation with reuse detection),
//! logout, verify, profile, usage, API keys and `users/{id}/api-key`.

mod keys;
mod openapi;
mod session;

use axum::Router;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "auth",
    routes,
};

/// Every route of this function, each declared once.
pub fn routes() -> Vec<Route> {
    vec![
        route(GET, "/openapi.json", openapi::show, Access::public()),
        route(POST, "/auth/login", session::login, Access::public()),
        route(POST, "/auth/refresh", session::refresh, Access::public()),
        route(POST, "/auth/logout", session::logout, Access::public()),
        route(
            POST,
            "/auth/reset-password",
            session::reset_password,
            Access::public(),
        ),
        route(GET, "/auth/verify", session::verify, Access::read()),
        route(GET, "/profile", session::profile, Access::read()),
        // Never speculative: it reports this very request's counts.
        route(GET, "/usage", session::usage, Access::caller()),
        route(GET, "/api-keys", keys::list, Access::read()),
        route(
            POST,
            "/api-keys",
            keys::create,
            Access::needs("api_key.manage"),
        ),
        route(GET, "/api-keys/{id}", keys::show, Access::read()),
        route(
            DELETE,
            "/api-keys/{id}",
            keys::revoke,
            Access::needs("api_key.manage"),
        ),
        route(
            POST,
            "/api-keys/{id}/rotate",
            keys::rotate,
            Access::needs("api_key.manage"),
        ),
        route(
            POST,
            "/users/{id}/api-key",
            keys::create_for_user,
            Access::needs("api_key.manage"),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
