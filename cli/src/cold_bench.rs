//! Cold start, as Lambda pays it: a function's release binary is spawned the way Lambda
//! starts a `bootstrap` (the Runtime API's address and the function's variables in its
//! environment) against a tiny Runtime API in this process, which times how long the
//! binary takes to ask for its first event (its init: the SDK's configuration, the
//! secrets, the state) and to answer that event, a `GET /api/v1/klips` with an API key
//! (API Gateway v2, as `tests/events/klips-list.json`). The same is done for
//! `hello-lambda`, the smallest `lambda_http` function built with the same profile, and the
//! function's figures are printed as ratios of its, with each binary's size and the peak
//! RSS after the first answer. Both binaries are the ones next to this one
//! (`make bench` builds them); the part is skipped when they are missing.

use crate::bench_support;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use platform::AppState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Spawns per binary (alternating, so both meet the same machine).
const ROUNDS: usize = 7;

/// The event every cold start answers: the saved API Gateway v2 event of a Klip list.
const EVENT: &str = include_str!("../../tests/events/klips-list.json");

/// One cold start.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// From spawning to the first `GET .../invocation/next`.
    init: Duration,
    /// From spawning to the answer to the first event.
    first: Duration,
    /// Peak resident set after the first answer (MiB).
    rss_mib: f64,
    /// Of the init, what the function's own log line says its state took (ms): the SDK's
    /// configuration and clients, then the secrets and warm-up calls (`hello-lambda` has
    /// no such line).
    phases: Option<(f64, f64)>,
}

/// When the first event was answered (and the answer), or why it was not.
type Answer = Result<(Duration, String), String>;

/// The Runtime API one spawned binary talks to.
struct Stub {
    start: Instant,
    event: String,
    asked: Mutex<Option<Duration>>,
    answered: Mutex<Option<oneshot::Sender<Answer>>>,
}

async fn next(State(stub): State<Arc<Stub>>) -> (HeaderMap, String) {
    let first = {
        let mut asked = stub.asked.lock().unwrap();
        let first = asked.is_none();
        if first {
            *asked = Some(stub.start.elapsed());
        }
        first
    };
    if !first {
        // One event per process: the next ask waits until the process is stopped.
        std::future::pending::<()>().await;
    }
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "cold-start-1".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:cold-start".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000001;Parent=0000000000000001;Sampled=0".into(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    (headers, stub.event.clone())
}

fn finish(stub: &Stub, outcome: Answer) {
    if let Some(done) = stub.answered.lock().unwrap().take() {
        let _ = done.send(outcome);
    }
}

async fn respond(State(stub): State<Arc<Stub>>, body: String) -> axum::http::StatusCode {
    finish(&stub, Ok((stub.start.elapsed(), body)));
    axum::http::StatusCode::ACCEPTED
}

async fn failed(State(stub): State<Arc<Stub>>, body: String) -> axum::http::StatusCode {
    finish(&stub, Err(body));
    axum::http::StatusCode::ACCEPTED
}

/// Spawns `binary` once against a fresh Runtime API and times its cold start.
async fn cold_start(binary: &std::path::Path, event: &str) -> Result<Sample, String> {
    let (done, answered) = oneshot::channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let stub = Arc::new(Stub {
        start,
        event: event.to_owned(),
        asked: Mutex::new(None),
        answered: Mutex::new(Some(done)),
    });
    let api = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(stub.clone());
    let server = tokio::spawn(async move { axum::serve(listener, api).await });
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // What Lambda sets; the table, bucket, endpoints and secret are this process's (the
    // local stack's), as the template sets them on AWS.
    let mut child = tokio::process::Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("pulseboard-{name}"))
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start")
        .env(
            "RUST_LOG",
            format!("warn,{}=info", platform::state::INIT_LOG_TARGET),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let outcome = tokio::time::timeout(Duration::from_secs(30), answered).await;
    let rss_mib = child
        .id()
        .map_or(0.0, |pid| crate::push_bench::status_mib(pid, "VmHWM:"));
    let _ = child.kill().await;
    server.abort();
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = stderr.read_to_string(&mut log).await;
    }
    let phases = log.lines().find_map(|line| {
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = &line["fields"];
        Some((
            fields["sdk_config_ms"].as_f64()?,
            fields["warm_up_ms"].as_f64()?,
        ))
    });
    let (first, body) = match outcome {
        Ok(Ok(Ok(answer))) => answer,
        Ok(Ok(Err(error))) => return Err(format!("{name} failed: {error}")),
        _ => return Err(format!("{name} did not answer within 30 s")),
    };
    let answer: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if answer["statusCode"] != 200 {
        return Err(format!("{name} answered {answer}"));
    }
    let init = stub
        .asked
        .lock()
        .unwrap()
        .ok_or_else(|| format!("{name} answered without asking"))?;
    Ok(Sample {
        init,
        first,
        rss_mib,
        phases,
    })
}

fn median(samples: &[Sample], of: impl Fn(&Sample) -> Duration) -> Duration {
    let mut values: Vec<Duration> = samples.iter().map(of).collect();
    bench_support::percentile(&mut values, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

pub async fn run() -> Result<(), String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = here.parent().ok_or("no directory")?;
    let function = dir.join("klips");
    let hello = dir.join("hello-lambda");
    println!();
    if !function.is_file() || !hello.is_file() {
        println!(
            "cold start: skipped ({} and {} are built by make bench)",
            function.display(),
            hello.display()
        );
        return Ok(());
    }
    let state = AppState::from_env().await?;
    let company = bench_support::company(&state, "Cold start bench").await?;
    let event = EVENT.replace("{{API_KEY}}", &company.api_key);
    let (mut theirs, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        theirs.push(cold_start(&function, &event).await?);
        baseline.push(cold_start(&hello, &event).await?);
    }
    let peak = |s: &[Sample]| s.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let (init, first) = (median(&theirs, |s| s.init), median(&theirs, |s| s.first));
    let (hello_init, hello_first) = (
        median(&baseline, |s| s.init),
        median(&baseline, |s| s.first),
    );
    println!(
        "cold start: {ROUNDS} spawns each of the klips function and hello-lambda (the same release profile), medians; \
         target: init <= 1.5x hello-lambda's, bootstrap <= 8 MB, RSS <= 40 MB"
    );
    println!(
        "  hello-lambda  init {:7.2} ms             first answer {:7.2} ms              binary {:5.1} MB  peak RSS {:5.1} MiB",
        ms(hello_init),
        ms(hello_first),
        mb(&hello),
        peak(&baseline)
    );
    println!(
        "  klips         init {:7.2} ms ({:5.2}x)   first answer {:7.2} ms ({:5.2}x)   binary {:5.1} MB  peak RSS {:5.1} MiB",
        ms(init),
        ms(init) / ms(hello_init).max(0.001),
        ms(first),
        ms(first) / ms(hello_first).max(0.001),
        mb(&function),
        peak(&theirs)
    );
    let phase = |pick: fn((f64, f64)) -> f64| {
        let mut values: Vec<Duration> = theirs
            .iter()
            .filter_map(|s| s.phases)
            .map(|p| Duration::from_secs_f64(pick(p) / 1000.0))
            .collect();
        (!values.is_empty()).then(|| ms(bench_support::percentile(&mut values, 0.5)))
    };
    if let (Some(config), Some(warm_up)) = (phase(|p| p.0), phase(|p| p.1)) {
        println!(
            "  klips init, by its own log: SDK configuration and clients {config:.2} ms, secrets and warm-up calls \
             (DescribeTable, HeadBucket: the first connections) {warm_up:.2} ms, the rest (loading the binary, \
             the runtime, logging) {:.2} ms",
            (ms(init) - config - warm_up).max(0.0)
        );
    }
    println!(
        "  (the first answer of klips includes its first DynamoDB calls: the key, the counters, the list)"
    );
    Ok(())
}
