//! Per-request facts and their two outputs: one JSON log line per request (request id,
//! method, path, route, company, status, latency, database calls) and, on Lambda, one
//! CloudWatch Embedded Metric Format line per request and per worker run, which CloudWatch
//! turns into metrics without an API call.
//!
//! Database and file-storage calls are counted by an SDK interceptor on the store's clients
//! into the request's task-local [`RequestMetrics`]; calls made outside a request (the
//! worker, start-up) are not counted.

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// What one request did, filled in as it goes.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// DynamoDB and S3 operations made for the request (retries not counted again).
    pub store_calls: AtomicU32,
    /// The declared route (set by admission).
    pub route: OnceLock<&'static str>,
    /// The request's id (set by the edge).
    pub request_id: OnceLock<String>,
}

tokio::task_local! {
    static CURRENT: Arc<RequestMetrics>;
}

/// Runs `work` as one request whose facts are collected into `metrics`.
pub async fn scope<F: std::future::Future>(metrics: Arc<RequestMetrics>, work: F) -> F::Output {
    CURRENT.scope(metrics, work).await
}

/// The id of the request being handled (outside a request: `None`).
pub fn request_id() -> Option<String> {
    CURRENT
        .try_with(|m| m.request_id.get().cloned())
        .ok()
        .flatten()
}

/// Records the current request's route (outside a request: nothing).
pub fn set_route(route: &'static str) {
    let _ = CURRENT.try_with(|m| m.route.set(route));
}

/// Test support: appends `route METHOD /declared/{path} status` (or, for an answer given
/// before any route took the request, such as a 413 for an oversize body, `path METHOD
/// /the/routed/path status`) to `$PULSEBOARD_STATUS_LOG/<pid>.txt` the first time this
/// process gives that answer, so a check after the end-to-end suite and the fuzzer (`make
/// statuses`) can compare the statuses answered with the ones `docs/openapi.yaml`
/// documents. Nothing without the variable.
#[cfg(feature = "test-support")]
pub fn record_status(method: &str, route: Option<&str>, routed_path: Option<&str>, status: u16) {
    use std::collections::HashSet;
    use std::io::Write;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(dir) = std::env::var("PULSEBOARD_STATUS_LOG") else {
        return;
    };
    let line = match (route, routed_path) {
        (Some(route), _) => format!("route {method} {route} {status}"),
        (None, Some(path)) => format!("path {method} {path} {status}"),
        (None, None) => return,
    };
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.get_or_insert_with(HashSet::new).insert(line.clone()) {
        return;
    }
    let _ = std::fs::create_dir_all(&dir);
    let file = std::path::Path::new(&dir).join(format!("{}.txt", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Counts each operation of the store's SDK clients against the current request, and
/// refuses a database write made by a held handler before admission admitted it (see
/// [`crate::held`]): the store's write methods wait for that, so this only catches a write
/// that bypassed them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountCalls;

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "PulseboardCountCalls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        if crate::held::writes_held() {
            let operation = cfg.load::<Metadata>().map(Metadata::name);
            if let Some(op) = operation.filter(|op| crate::held::is_database_write(op)) {
                tracing::error!(operation = op, "a database write before admission decided");
                return Err(format!("{op} refused: the request is not admitted yet").into());
            }
        }
        let _ = CURRENT.try_with(|m| m.store_calls.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }
}

/// The function's name as Lambda sets it; `None` outside Lambda (no metric lines then,
/// unless `PULSEBOARD_EMF=1`).
fn function_name() -> Option<String> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .or_else(|| {
                (std::env::var("PULSEBOARD_EMF").as_deref() == Ok("1"))
                    .then(|| "pulseboard-local".to_owned())
            })
            .filter(|n| !n.is_empty())
    })
    .clone()
}

/// The namespace of every metric.
pub const NAMESPACE: &str = "Pulseboard";

/// One request's EMF line: metrics `Latency` (ms), `StoreCalls`, `Requests`, `Errors5xx` and
/// `RateLimited`, by function and by function and route; status and request id as
/// properties (searchable in Logs Insights, not dimensions).
pub fn request_emf(
    function: &str,
    route: &str,
    status: u16,
    latency_ms: f64,
    store_calls: u32,
    request_id: &str,
    timestamp_ms: i64,
) -> serde_json::Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function"], ["function", "route"]],
                "Metrics": [
                    {"Name": "Latency", "Unit": "Milliseconds"},
                    {"Name": "StoreCalls", "Unit": "Count"},
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Errors5xx", "Unit": "Count"},
                    {"Name": "RateLimited", "Unit": "Count"},
                ],
            }],
        },
        "function": function,
        "route": route,
        "Latency": latency_ms,
        "StoreCalls": store_calls,
        "Requests": 1,
        "Errors5xx": u32::from(status >= 500),
        "RateLimited": u32::from(status == 429),
        "status": status,
        "request_id": request_id,
    })
}

/// One worker invocation's EMF line: `Duration` (ms), `Runs` and `Failures`, by function and
/// kind (`stream` or `tick`).
pub fn worker_emf(
    function: &str,
    kind: &str,
    duration_ms: f64,
    failures: usize,
    timestamp_ms: i64,
) -> serde_json::Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function", "kind"]],
                "Metrics": [
                    {"Name": "Duration", "Unit": "Milliseconds"},
                    {"Name": "Runs", "Unit": "Count"},
                    {"Name": "Failures", "Unit": "Count"},
                ],
            }],
        },
        "function": function,
        "kind": kind,
        "Duration": duration_ms,
        "Runs": 1,
        "Failures": failures,
    })
}

/// Writes an EMF line to stdout (where Lambda's log capture reads it), on Lambda only.
pub fn emit(line: impl FnOnce(&str) -> serde_json::Value) {
    if let Some(function) = function_name() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line(&function));
    }
}

/// The path as it may be logged: a published link's token (a bearer secret in the path) is
/// replaced by `{token}`.
pub fn loggable_path(path: &str) -> String {
    match path.find("/public/dashboards/") {
        Some(at) => {
            let start = at + "/public/dashboards/".len();
            let end = path[start..].find('/').map_or(path.len(), |i| start + i);
            format!("{}{{token}}{}", &path[..start], &path[end..])
        }
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_link_tokens_never_reach_a_log() {
        assert_eq!(
            loggable_path("/api/v1/public/dashboards/pd_secret123"),
            "/api/v1/public/dashboards/{token}"
        );
        assert_eq!(
            loggable_path("/api/1.0/public/dashboards/pd_secret123/more"),
            "/api/1.0/public/dashboards/{token}/more"
        );
        assert_eq!(loggable_path("/api/v1/klips/k1"), "/api/v1/klips/k1");
    }

    #[test]
    fn request_lines_are_embedded_metric_format() {
        let line = request_emf(
            "auth",
            "GET /profile",
            429,
            12.5,
            2,
            "r1",
            1_800_000_000_000,
        );
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        // Every metric named in the directive is a number at the top level, and every
        // dimension a string there (what CloudWatch requires of an EMF line).
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name}");
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for dimension in set.as_array().unwrap() {
                assert!(line[dimension.as_str().unwrap()].is_string());
            }
        }
        assert_eq!(line["RateLimited"], 1);
        assert_eq!(line["Errors5xx"], 0);
        assert_eq!(line["StoreCalls"], 2);
        let worker = worker_emf("worker", "tick", 40.0, 0, 1_800_000_000_000);
        assert_eq!(worker["Runs"], 1);
    }

    #[tokio::test]
    async fn routes_and_calls_are_collected_per_request() {
        let metrics = Arc::new(RequestMetrics::default());
        scope(metrics.clone(), async {
            set_route("GET /klips/{id}");
            CURRENT.with(|m| m.store_calls.fetch_add(2, Ordering::Relaxed));
        })
        .await;
        assert_eq!(metrics.route.get(), Some(&"GET /klips/{id}"));
        assert_eq!(metrics.store_calls.load(Ordering::Relaxed), 2);
        // Outside a request nothing is recorded, and nothing fails.
        set_route("ignored");
    }
}
