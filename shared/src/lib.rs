//! `shared`: everything every Pulseboard function needs and nothing resource-specific.
//!
//! A function's `router()` lists its routes and handlers; `http::app` wraps it in the
//! cross-cutting layers of API.md §1–§5 (addressing, date versions, request ids, JSONP, error
//! JSON, body limits, panics), and `auth::authenticate` (a route layer) does credentials,
//! permissions and per-company rate limits once for every protected route.

pub mod assets;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod http;
pub mod ids;
pub mod klip;
pub mod paging;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod table;
pub mod time;

pub use error::{ApiError, ApiResult, FieldError};
pub use state::AppState;

/// JSON logs for CloudWatch; `RUST_LOG` picks the level (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
