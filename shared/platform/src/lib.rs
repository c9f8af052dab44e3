//! `platform`: what every Pulseboard function stands on (what the design card calls the
//! shared crate): the edge, admission, rate limits, the store, errors and paging. What the
//! resources *are* lives in the `domain` crate, which knows nothing of HTTP.
//!
//! A function declares each of its routes once ([`routes::route`]); [`routes::router`]
//! mounts them, each non-public one behind the admission pipeline ([`admission`]), which does
//! credentials, permissions and per-company rate limits once for every route; `http::app`
//! wraps the whole in the cross-cutting layers of API.md §1–§5 (addressing, date versions,
//! request ids, JSONP, error JSON, body limits, panics).

pub mod access;
pub mod admission;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod connector;
pub mod egress;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod held;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod paging;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod store;
pub mod table;
pub mod time;

pub use error::{ApiError, ApiResult, FieldError, Problems};
pub use state::AppState;

/// JSON logs for CloudWatch; `RUST_LOG` picks the level (default `info`).
pub fn init_tracing() {
    init_tracing_at("info");
}

/// [`init_tracing`] with another level when `RUST_LOG` is not set (benchmarks log warnings
/// only, not a line per request). `RUST_LOG` is a level, or `target=level` directives
/// separated by commas (a `Targets` filter: `EnvFilter`'s span and field filters would link
/// a regular expression engine into every function for nothing).
pub fn init_tracing_at(default_level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .or_else(|| default_level.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .without_time()
        .with_filter(filter);
    let _ = tracing_subscriber::registry().with(json).try_init();
}
