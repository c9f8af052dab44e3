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
use platform::AppState;
use pulseboard_cli::runtime_api::{Outcome, RuntimeApi};
use std::time::{Duration, Instant};

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

/// Spawns `binary` once against a fresh Runtime API and times its cold start.
async fn cold_start(binary: &std::path::Path, event: &str) -> Result<Sample, String> {
    let mut runtime = RuntimeApi::start().await?;
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let event: serde_json::Value = serde_json::from_str(event).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut command = tokio::process::Command::new(binary);
    let mut child = runtime
        .lambda_env(&mut command, &name, "cold-start")
        .env(
            "RUST_LOG",
            format!("warn,{}=info", platform::state::INIT_LOG_TARGET),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let outcome = runtime
        .invoke("cold-start-1", event, Duration::from_secs(30))
        .await;
    let first = start.elapsed();
    let rss_mib = child
        .id()
        .map_or(0.0, |pid| crate::push_bench::status_mib(pid, "VmHWM:"));
    let _ = child.kill().await;
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
    let answer = match outcome {
        Ok((_, Outcome::Response(answer))) => answer,
        Ok((_, Outcome::Error(error))) => return Err(format!("{name} failed: {error}")),
        Err(e) => return Err(format!("{name}: {e}")),
    };
    if answer["statusCode"] != 200 {
        return Err(format!("{name} answered {answer}"));
    }
    let init = runtime
        .first_ask()
        .ok_or_else(|| format!("{name} answered without asking"))?
        .saturating_duration_since(start);
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
