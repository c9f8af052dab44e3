//! What the parts of `make bench` share: percentiles, a company with limits no bench
//! reaches, and the API served in this process.

use platform::bootstrap::{bootstrap, Bootstrapped, NewCompany};
use platform::AppState;
use std::time::Duration;

/// The password of every bench company's admin.
pub const PASSWORD: &str = "bench-password-1";

/// The limits of a bench company ([`company`]): no bench reaches them.
pub const PER_SECOND_LIMIT: u64 = 1_000_000;
pub const DAILY_LIMIT: u64 = 1_000_000_000;

/// The `p` quantile (0..=1) of `samples` (sorted in place); zero when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// Creates the table if needed and a company named `name` whose limits no bench reaches.
pub async fn company(state: &AppState, name: &str) -> Result<Bootstrapped, String> {
    company_with_limits(state, name, PER_SECOND_LIMIT).await
}

/// A company with this per-second limit (and a daily one no bench reaches).
pub async fn company_with_limits(
    state: &AppState,
    name: &str,
    per_second_limit: u64,
) -> Result<Bootstrapped, String> {
    state.store.create_table().await?;
    bootstrap(
        state,
        NewCompany {
            company: name.into(),
            email: format!("bench-{}@bench.pulseboard.local", domain::ids::new_id()),
            password: PASSWORD.into(),
            plan: "enterprise".into(),
            daily_limit: Some(DAILY_LIMIT),
            per_second_limit: Some(per_second_limit),
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// Puts `figures` under `part` in `target/bench/results.json`, keeping what the other parts
/// of the run wrote there (the `delay` part, which runs before, writes the file afresh).
pub fn record_results(part: &str, figures: serde_json::Value) -> Result<(), String> {
    let dir = std::path::Path::new("target/bench");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("results.json");
    let mut results = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    results[part] = figures;
    let bytes = serde_json::to_vec_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))
}

/// Serves every function's routes in this process on a free loopback port; answers the
/// base URL.
pub async fn serve_here(state: &AppState) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = pulseboard_cli::all_routes(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}
