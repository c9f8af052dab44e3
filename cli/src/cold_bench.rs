//! Cold start, as Lambda pays it, against a bare GetItem function as the yardstick.
//!
//! A function's release binary is spawned the way Lambda starts a `bootstrap` (the Runtime
//! API's address and the function's variables in its environment) against a tiny Runtime
//! API in this process, which times how long the binary takes to ask for its first event
//! (its init) and to answer that event (init + first request: what the user of a new
//! instance waits for). Every DynamoDB call of the spawned functions goes through the
//! round-trip bench's delaying proxy (`crate::delay_bench::Rig`) at 0, 4 and 20 ms per call.
//!
//! The yardstick is `bare-getitem` (`src/bin/bare_getitem.rs`): the SDK's configuration at
//! init and one `GetItem` per request, built with the same profile. The `klips` function
//! answers a first `GET /klips/{id}` with an API key and, in another spawn, with a JWT
//! access token; each figure is a ratio of the bare function's in the same run. Then a
//! cold-start mix: a stream of requests to a warm instance in which one request in 100
//! lands on a fresh one, as when Lambda scales out, whose p99 is held against the warm p50.
//! Last, each binary's size, raw and zipped (what Lambda downloads on a cold start).
//! Both binaries are the ones next to this one (`make bench` builds them); the part is
//! skipped when they are missing.

use crate::bench_support;
use crate::delay_bench::Rig;
use pulseboard_cli::runtime_api::{Outcome, RuntimeApi};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Spawns per binary and delay (alternating, so all meet the same machine).
const ROUNDS: usize = 7;
/// The delays every DynamoDB call pays, in ms.
const DELAYS: [u64; 3] = [0, 4, 20];
/// Requests of the cold-start mix, and how often one lands on a fresh instance.
const MIX_REQUESTS: usize = 600;
const MIX_COLD_EVERY: usize = 100;

/// The event every Klip read answers: the saved API Gateway v2 event of `GET /klips/{id}`.
const KLIP_EVENT: &str = include_str!("../../tests/events/klips-get.json");

/// One cold start.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// From spawning to the first `GET .../invocation/next`.
    init: Duration,
    /// From spawning to the answer to the first event.
    first: Duration,
    /// Peak resident set after the first answer (MiB).
    rss_mib: f64,
}

/// What one kind of spawn runs: the binary, its first event and its environment.
struct Spawn {
    name: &'static str,
    binary: PathBuf,
    event: Value,
    env: Vec<(&'static str, String)>,
}

impl Spawn {
    /// Starts the binary against `runtime`.
    fn start(&self, runtime: &RuntimeApi) -> Result<tokio::process::Child, String> {
        let mut command = tokio::process::Command::new(&self.binary);
        runtime.lambda_env(&mut command, self.name, "cold-start");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        // COLD_BENCH_LOG=<filter> shows the spawned functions' logs (to see a cold start's
        // calls); quiet otherwise.
        let log = std::env::var("COLD_BENCH_LOG").ok();
        command
            .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
            .stdout(std::process::Stdio::null())
            .stderr(match log {
                Some(_) => std::process::Stdio::inherit(),
                None => std::process::Stdio::null(),
            })
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))
    }

    /// Spawns the binary once against a fresh Runtime API and times its cold start.
    async fn cold_start(&self) -> Result<Sample, String> {
        let mut runtime = RuntimeApi::start().await?;
        let start = Instant::now();
        let mut child = self.start(&runtime)?;
        let outcome = runtime
            .invoke("cold-start-1", self.event.clone(), Duration::from_secs(30))
            .await;
        let first = start.elapsed();
        let rss_mib = child
            .id()
            .map_or(0.0, |pid| crate::push_bench::status_mib(pid, "VmHWM:"));
        let _ = child.kill().await;
        answered(self.name, outcome)?;
        let init = runtime
            .first_ask()
            .ok_or_else(|| format!("{} answered without asking", self.name))?
            .saturating_duration_since(start);
        Ok(Sample {
            init,
            first,
            rss_mib,
        })
    }
}

/// The answer's status must be 200.
fn answered(name: &str, outcome: Result<(String, Outcome), String>) -> Result<(), String> {
    match outcome {
        Ok((_, Outcome::Response(answer))) if answer["statusCode"] == 200 => Ok(()),
        Ok((_, Outcome::Response(answer))) => Err(format!("{name} answered {answer}")),
        Ok((_, Outcome::Error(error))) => Err(format!("{name} failed: {error}")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

fn median(samples: &[Sample], of: impl Fn(&Sample) -> Duration) -> Duration {
    let mut values: Vec<Duration> = samples.iter().map(of).collect();
    bench_support::percentile(&mut values, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The three spawns: the bare function, and klips with an API key and with a JWT.
struct Spawns {
    bare: Spawn,
    key: Spawn,
    jwt: Spawn,
}

/// A Klip to read, a session, and the spawns' events and environments (every DynamoDB
/// call through the rig's delaying proxy).
async fn spawns(rig: &Rig, dir: &Path) -> Result<Spawns, String> {
    let ds_id = rig
        .api
        .create("/datasources", json!({"name": "Cold", "format": "csv"}))
        .await?;
    rig.api
        .seed(
            &ds_id,
            "day,amount\n2026-12-01,5\n2026-12-02,7\n".into(),
            "the source",
        )
        .await?;
    let klip = rig
        .api
        .call(
            Method::POST,
            "/klips",
            Some(
                json!({"name": "Cold", "type": "number", "datasource_id": ds_id,
                "query": {"value": "amount"}}),
            ),
        )
        .await?;
    let klip_id = klip["data"]["id"].as_str().unwrap_or_default().to_owned();
    let session = rig.api.session(&rig.made.email).await?;
    let access = session["data"]["access"]
        .as_str()
        .ok_or_else(|| format!("login answered {session}"))?
        .to_owned();
    let key_event: Value = serde_json::from_str(
        &KLIP_EVENT
            .replace("{{KLIP_ID}}", &klip_id)
            .replace("{{API_KEY}}", &rig.made.api_key),
    )
    .map_err(|e| e.to_string())?;
    let mut jwt_event = key_event.clone();
    if let Some(headers) = jwt_event["headers"].as_object_mut() {
        headers.remove("kf-api-key");
        headers.insert("authorization".into(), json!(format!("Bearer {access}")));
    }
    let db = vec![("AWS_ENDPOINT_URL_DYNAMODB", rig.db_base.clone())];
    let mut bare_env = db.clone();
    bare_env.push(("BARE_PK", format!("COMPANY#{}", rig.made.company_id)));
    bare_env.push(("BARE_SK", "COMPANY".into()));
    let klips = |name, event| Spawn {
        name,
        binary: dir.join("klips"),
        event,
        env: db.clone(),
    };
    Ok(Spawns {
        bare: Spawn {
            name: "bare-getitem",
            binary: dir.join("bare-getitem"),
            event: key_event.clone(),
            env: bare_env,
        },
        key: klips("klips", key_event),
        jwt: klips("klips", jwt_event),
    })
}

/// The medians of one delay: (init, init + first request) of each spawn.
struct AtDelay {
    delay_ms: u64,
    bare: (Duration, Duration),
    key: (Duration, Duration),
    jwt: (Duration, Duration),
    rss: (f64, f64),
}

/// `ROUNDS` cold starts of each spawn at `delay_ms`, alternating.
async fn at_delay(rig: &Rig, spawns: &Spawns, delay_ms: u64) -> Result<AtDelay, String> {
    rig.set_delay(delay_ms);
    let (mut bare, mut key, mut jwt) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare.push(spawns.bare.cold_start().await?);
        key.push(spawns.key.cold_start().await?);
        jwt.push(spawns.jwt.cold_start().await?);
    }
    let both = |s: &[Sample]| (median(s, |s| s.init), median(s, |s| s.first));
    let peak = |s: &[Sample]| s.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    Ok(AtDelay {
        delay_ms,
        bare: both(&bare),
        key: both(&key),
        jwt: both(&jwt),
        rss: (peak(&bare), peak(&key).max(peak(&jwt))),
    })
}

/// Targets at 20 ms: init + first request of klips with an API key <= 2.0x the bare
/// function's, with a JWT <= 1.5x.
const KEY_TARGET: f64 = 2.0;
const JWT_TARGET: f64 = 1.5;

fn print_delay(row: &AtDelay) -> Value {
    let ratio = |d: Duration| ms(d) / ms(row.bare.1).max(0.001);
    let targets = (row.delay_ms == 20).then_some((KEY_TARGET, JWT_TARGET));
    let verdict = |r: f64, t: Option<f64>| match t {
        Some(t) if r <= t => format!("(target <= {t}x: met)"),
        Some(t) => format!("(target <= {t}x: NOT met)"),
        None => String::new(),
    };
    println!(
        "  {:2} ms  bare GetItem init {:6.2} + first {:6.2} = {:6.2} ms | klips, API key init {:6.2}, total {:6.2} ms {:4.2}x {} | klips, JWT init {:6.2}, total {:6.2} ms {:4.2}x {}",
        row.delay_ms,
        ms(row.bare.0),
        ms(row.bare.1 - row.bare.0),
        ms(row.bare.1),
        ms(row.key.0),
        ms(row.key.1),
        ratio(row.key.1),
        verdict(ratio(row.key.1), targets.map(|t| t.0)),
        ms(row.jwt.0),
        ms(row.jwt.1),
        ratio(row.jwt.1),
        verdict(ratio(row.jwt.1), targets.map(|t| t.1)),
    );
    json!({"delay_ms": row.delay_ms,
        "bare": {"init_ms": ms(row.bare.0), "total_ms": ms(row.bare.1)},
        "api_key": {"init_ms": ms(row.key.0), "total_ms": ms(row.key.1), "ratio": ratio(row.key.1),
            "target": targets.map(|t| t.0), "target_met": targets.map(|t| ratio(row.key.1) <= t.0)},
        "jwt": {"init_ms": ms(row.jwt.0), "total_ms": ms(row.jwt.1), "ratio": ratio(row.jwt.1),
            "target": targets.map(|t| t.1), "target_met": targets.map(|t| ratio(row.jwt.1) <= t.1)},
        "peak_rss_mib": {"bare": row.rss.0, "klips": row.rss.1}})
}

/// A warm instance of `spawn`: started, and its first request answered.
struct Warm {
    runtime: RuntimeApi,
    _child: tokio::process::Child,
    event: Value,
    sent: usize,
}

impl Warm {
    async fn start(spawn: &Spawn) -> Result<Warm, String> {
        let runtime = RuntimeApi::start().await?;
        let child = spawn.start(&runtime)?;
        let mut warm = Warm {
            runtime,
            _child: child,
            event: spawn.event.clone(),
            sent: 0,
        };
        warm.request().await?;
        Ok(warm)
    }

    /// One request to the warm instance, timed.
    async fn request(&mut self) -> Result<Duration, String> {
        self.sent += 1;
        let id = format!("warm-{}", self.sent);
        let start = Instant::now();
        let outcome = self
            .runtime
            .invoke(&id, self.event.clone(), Duration::from_secs(30))
            .await;
        let took = start.elapsed();
        answered("warm klips", outcome)?;
        Ok(took)
    }
}

/// The cold-start mix at 20 ms: `MIX_REQUESTS` requests with an API key, every
/// `MIX_COLD_EVERY`th on a fresh instance (its init + first request is what that user
/// waits), the rest on one warm instance. Target: p99 <= 2x the warm p50.
async fn cold_mix(rig: &Rig, spawns: &Spawns) -> Result<Value, String> {
    rig.set_delay(20);
    let mut warm = Warm::start(&spawns.key).await?;
    let mut bare = Warm::start(&spawns.bare).await?;
    let (mut all, mut warm_only, mut cold, mut bare_warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=MIX_REQUESTS {
        if i % MIX_COLD_EVERY == 0 {
            let sample = spawns.key.cold_start().await?;
            cold.push(sample.first);
            all.push(sample.first);
        } else {
            let took = warm.request().await?;
            warm_only.push(took);
            all.push(took);
        }
        if i % 10 == 0 {
            bare_warm.push(bare.request().await?);
        }
    }
    let p = |v: &mut Vec<Duration>, q| bench_support::percentile(v, q);
    let (warm50, p99, cold50, bare50) = (
        p(&mut warm_only, 0.5),
        p(&mut all, 0.99),
        p(&mut cold, 0.5),
        p(&mut bare_warm, 0.5),
    );
    let ratio = ms(p99) / ms(warm50).max(0.001);
    let met = ratio <= 2.0;
    println!(
        "  cold-start mix at 20 ms: {MIX_REQUESTS} GET /klips/{{id}} with an API key, 1 in {MIX_COLD_EVERY} on a fresh instance: \
         warm p50 {:.2} ms ({:.2}x a warm bare GetItem's {:.2} ms), cold p50 {:.2} ms, p99 of all {:.2} ms = {:.2}x the warm p50 (target <= 2x: {})",
        ms(warm50),
        ms(warm50) / ms(bare50).max(0.001),
        ms(bare50),
        ms(cold50),
        ms(p99),
        ratio,
        if met { "met" } else { "NOT met" }
    );
    Ok(
        json!({"requests": MIX_REQUESTS, "cold_every": MIX_COLD_EVERY, "warm_p50_ms": ms(warm50),
        "warm_bare_p50_ms": ms(bare50), "cold_p50_ms": ms(cold50), "p99_ms": ms(p99),
        "p99_over_warm_p50": ratio, "target": 2.0, "target_met": met}),
    )
}

/// The binaries next to this one (klips, the bare function, hello-lambda) and every
/// function's packaged `bootstrap` (`target/lambda/*/bootstrap`, after `make package`), raw
/// and zipped: what Lambda downloads on a cold start.
fn sizes(dir: &Path) -> Value {
    let mut binaries: Vec<(String, PathBuf)> = ["klips", "bare-getitem", "hello-lambda"]
        .iter()
        .map(|n| (format!("{n} (release)"), dir.join(n)))
        .collect();
    if let Ok(packaged) = std::fs::read_dir(Path::new("target/lambda")) {
        let mut found: Vec<(String, PathBuf)> = packaged
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.path().join("bootstrap"),
                )
            })
            .filter(|(_, p)| p.is_file())
            .collect();
        found.sort();
        binaries.extend(found);
    }
    println!("  sizes, raw and zipped with deflate as a Lambda package (packaged bootstraps from make package, if any):");
    let mut rows = Vec::new();
    for (name, path) in binaries {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let zipped = zipped_len(&bytes);
        println!(
            "    {name:24} {:6.1} MB raw  {:5.1} MB zipped",
            bytes.len() as f64 / 1e6,
            zipped as f64 / 1e6
        );
        rows.push(json!({"binary": name, "bytes": bytes.len(), "zipped_bytes": zipped}));
    }
    Value::Array(rows)
}

/// The size of `bytes` as the one file of a zip archive, deflated (a zip adds about 100
/// bytes of headers to the deflate stream).
fn zipped_len(bytes: &[u8]) -> usize {
    use flate2::write::DeflateEncoder;
    use std::io::Write;
    let mut encoder = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(bytes);
    encoder.finish().map_or(0, |v| v.len() + 100)
}

pub async fn run() -> Result<(), String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = here.parent().ok_or("no directory")?;
    println!();
    if !dir.join("klips").is_file() || !dir.join("bare-getitem").is_file() {
        println!("cold start: skipped (klips and bare-getitem next to this binary are built by make bench)");
        return Ok(());
    }
    let rig = Rig::start().await?;
    let spawns = spawns(&rig, dir).await?;
    println!(
        "cold start: init + first request of a new instance (spawned against a Runtime API stub), medians of {ROUNDS} spawns, \
         every DynamoDB call delayed; the bare GetItem function (same profile) is the yardstick"
    );
    let mut rows = Vec::new();
    for delay_ms in DELAYS {
        rows.push(print_delay(&at_delay(&rig, &spawns, delay_ms).await?));
    }
    let mix = cold_mix(&rig, &spawns).await?;
    let sizes = sizes(dir);
    bench_support::record_results(
        "cold",
        json!({"rounds": ROUNDS, "by_delay": rows, "mix": mix, "sizes": sizes}),
    )
}
