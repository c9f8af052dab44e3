//! `make bench`, the data push part: a mixed load at concurrency 16 against a `pulseboard
//! serve` started for it (release build, this binary; it delivers the table's stream to the
//! report worker as on AWS): 85 % dashboard reads, 15 % appends of 20 rows to one source,
//! for each starting size of that source. Printed per size: append p50/p99 as ratios of the
//! dashboard read's under the same load, 409s, rows lost (every acknowledged row must be
//! there, once), the delay from an acknowledged append to the Klip value that includes it,
//! and the server's peak RSS (API and worker in one process).

use crate::bench_support::percentile;
use platform::AppState;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 16;
const APPEND_ROWS: usize = 20;

/// Starts a process's peak resident set over from its current size (Linux: `5` to
/// `/proc/{pid}/clear_refs`), so the next reading is the peak since.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// One field of a process's `/proc/{pid}/status` (kB), in MiB; 0 where /proc is missing.
pub(crate) fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Samples a process's anonymous resident memory (its heap and stacks: what data and
/// requests allocate, unlike the pages of its executable it has touched) every 10 ms until
/// `end`; answers the largest sample.
async fn peak_anon_mib(pid: u32, end: Instant) -> f64 {
    let mut peak: f64 = 0.0;
    while Instant::now() < end {
        peak = peak.max(status_mib(pid, "RssAnon:"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak
}

/// A process's peak resident set (VmHWM), in MiB; 0 where /proc is missing.
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, Value), String> {
        let r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("kf-api-key", &self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let (status, answer) = self
            .send(method, path, "application/json", body.to_string())
            .await?;
        if status >= 300 {
            return Err(format!("{path}: {status} {answer}"));
        }
        Ok(answer["data"].clone())
    }

    async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .header("kf-api-key", &self.key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

fn csv_rows(from: u64, count: usize) -> String {
    let mut csv = String::from("n,region,amount\n");
    for i in 0..count as u64 {
        let n = from + i;
        csv.push_str(&format!("{n},r{},{}\n", n % 7, 10 + n % 90));
    }
    csv
}

/// One size's source, with a count Klip over it on a dashboard, made before the load.
struct Scene {
    ds_id: String,
    data_path: String,
    klip_id: String,
    dash_id: String,
    /// The server's peak RSS after the replace that seeded the source (MiB).
    seed_peak: f64,
}

impl Scene {
    /// A source of `initial` rows, its peak RSS read after the seeding, then the Klip and
    /// the dashboard.
    async fn make(api: &Api, server: u32, initial: usize) -> Result<Scene, String> {
        use reqwest::Method;
        reset_peak_rss(server);
        let ds = api
            .json(
                Method::POST,
                "/datasources",
                json!({"name": format!("Pushed {initial}"), "format": "csv"}),
            )
            .await?;
        let ds_id = ds["id"].as_str().unwrap_or_default().to_owned();
        let data_path = format!("/datasources/{ds_id}/data");
        let (status, _) = api
            .send(Method::PUT, &data_path, "text/csv", csv_rows(0, initial))
            .await?;
        if status != 200 {
            return Err(format!("seeding {initial} rows answered {status}"));
        }
        // The replace that seeded the source is one request over the whole data; the load's
        // peak is measured from here.
        let seed_peak = peak_rss_mib(server);
        let klip = api
            .json(
                Method::POST,
                "/klips",
                json!({"name": "Rows", "type": "number", "datasource_id": ds_id,
                    "query": {"aggregate": "count"}}),
            )
            .await?;
        let klip_id = klip["id"].as_str().unwrap_or_default().to_owned();
        let dash = api
            .json(
                Method::POST,
                "/dashboards",
                json!({"name": format!("Load {initial}")}),
            )
            .await?;
        let dash_id = dash["id"].as_str().unwrap_or_default().to_owned();
        api.json(
            Method::PUT,
            &format!("/dashboards/{dash_id}/klip-instances"),
            json!({"klips": [{"klip_id": klip_id, "region": "main", "position": 0}]}),
        )
        .await?;
        Ok(Scene {
            ds_id,
            data_path,
            klip_id,
            dash_id,
            seed_peak,
        })
    }
}

/// What the load's workers share: the next row number to append, what they counted, each
/// request's time, and each acknowledged append's data version and time (until the Klip
/// shows it).
struct Load {
    next_row: AtomicU64,
    appended: AtomicU64,
    conflicts: AtomicUsize,
    errors: AtomicUsize,
    reads: Mutex<Vec<Duration>>,
    appends: Mutex<Vec<Duration>>,
    acked: Mutex<Vec<(u64, Instant)>>,
}

impl Load {
    /// A load whose first appended row is numbered `initial`.
    fn starting_at(initial: usize) -> Load {
        Load {
            next_row: AtomicU64::new(initial as u64),
            appended: AtomicU64::new(0),
            conflicts: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            reads: Mutex::new(Vec::new()),
            appends: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
        }
    }
}

/// One worker of the load until `end`: 3 in 20 requests append `APPEND_ROWS` rows to
/// `data_path`, the others read `dash_path`; `worker` staggers where it starts.
async fn mixed_load(
    api: Api,
    load: Arc<Load>,
    worker: usize,
    (data_path, dash_path): (String, String),
    end: Instant,
) {
    use reqwest::Method;
    let mut round: usize = worker;
    while Instant::now() < end {
        round += 1;
        let t = Instant::now();
        // 3 in 20 requests append.
        if round % 20 < 3 {
            let from = load
                .next_row
                .fetch_add(APPEND_ROWS as u64, Ordering::SeqCst);
            match api
                .send(
                    Method::POST,
                    &data_path,
                    "text/csv",
                    csv_rows(from, APPEND_ROWS),
                )
                .await
            {
                Ok((200, body)) => {
                    load.appends.lock().unwrap().push(t.elapsed());
                    load.appended
                        .fetch_add(APPEND_ROWS as u64, Ordering::SeqCst);
                    let version = body["data"]["data_version"].as_u64().unwrap_or(0);
                    load.acked.lock().unwrap().push((version, Instant::now()));
                }
                Ok((409, _)) => {
                    load.conflicts.fetch_add(1, Ordering::SeqCst);
                }
                _ => {
                    load.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        } else {
            match api.get(&dash_path).await {
                Ok((200, _)) => load.reads.lock().unwrap().push(t.elapsed()),
                _ => {
                    load.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// While the load runs (and up to 30 s after `end`), polls the Klip `klip_id` for the data
/// version it shows; answers how long each acknowledged append took to show in it.
async fn watch_klip(
    api: &Api,
    klip_id: &str,
    load: &Load,
    end: Instant,
) -> Result<Vec<Duration>, String> {
    let mut lags: Vec<Duration> = Vec::new();
    let mut seen_version = 0;
    let watch_until = end + Duration::from_secs(30);
    loop {
        let (_, klip) = api.get(&format!("/klips/{klip_id}")).await?;
        let version = klip["data"]["value"]["data_version"].as_u64().unwrap_or(0);
        let now = Instant::now();
        if version > seen_version {
            seen_version = version;
            let mut acked = load.acked.lock().unwrap();
            acked.retain(|(v, at)| {
                if *v <= version {
                    lags.push(now - *at);
                    false
                } else {
                    true
                }
            });
        }
        let all_done = now > end && load.acked.lock().unwrap().is_empty();
        if all_done || now > watch_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(lags)
}

/// What one size's load came to, to print.
struct Outcome {
    initial: usize,
    reads: Vec<Duration>,
    appends: Vec<Duration>,
    lags: Vec<Duration>,
    conflicts: usize,
    errors: usize,
    /// Rows the source should hold, it holds, and the Klip counts.
    expected: u64,
    row_count: u64,
    counted: u64,
    /// Acknowledged appends the Klip never showed.
    waiting: usize,
    seed_peak: f64,
    anon_peak: f64,
    /// The server's heap and code (MiB) before the load.
    heap_before: f64,
    code_before: f64,
}

impl Outcome {
    /// Prints the size's line; the server's peak RSS and code pages are read now.
    fn print(mut self, server: u32) {
        let (reads, appends, lags) = (&mut self.reads, &mut self.appends, &mut self.lags);
        let (r50, r99) = (percentile(reads, 0.5), percentile(reads, 0.99));
        let (a50, a99) = (percentile(appends, 0.5), percentile(appends, 0.99));
        let (l50, l99) = (percentile(lags, 0.5), percentile(lags, 0.99));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        let Outcome {
            initial,
            row_count,
            counted,
            waiting,
            ..
        } = self;
        println!(
            "{initial:>7} rows  append p50 {:7.1} ms ({:4.2}x read)  p99 {:7.1} ms ({:4.2}x read p99) | read p50 {:6.1} ms p99 {:6.1} ms | appends {:4} 409s {} errors {} | rows lost {} (count {row_count}, Klip {counted}) | append→Klip p50 {:6.0} ms p99 {:6.0} ms{} | peak RSS under load {:5.0} MiB (seeding {:4.0} MiB), of it heap {:4.0} MiB, code {:4.0} MiB (before the load: {:4.0} and {:4.0})",
            ms(a50),
            ratio(a50, r50),
            ms(a99),
            ratio(a99, r99),
            ms(r50),
            ms(r99),
            self.appends.len(),
            self.conflicts,
            self.errors,
            self.expected.saturating_sub(row_count),
            ms(l50),
            ms(l99),
            if waiting > 0 { format!(" ({waiting} never shown)") } else { String::new() },
            peak_rss_mib(server),
            self.seed_peak,
            self.anon_peak,
            status_mib(server, "RssFile:"),
            self.heap_before,
            self.code_before,
        );
    }
}

/// Runs the load against one source of `initial` rows; prints its line.
async fn one_size(api: &Api, server: u32, initial: usize, seconds: u64) -> Result<(), String> {
    let scene = Scene::make(api, server, initial).await?;
    // Let the worker finish with the seed (its Klip) before the load's peak starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    reset_peak_rss(server);
    let (heap_before, code_before) = (
        status_mib(server, "RssAnon:"),
        status_mib(server, "RssFile:"),
    );
    let load = Arc::new(Load::starting_at(initial));
    let end = Instant::now() + Duration::from_secs(seconds);
    let paths = (
        scene.data_path.clone(),
        format!("/dashboards/{}", scene.dash_id),
    );
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let (api, load, paths) = (api.clone(), load.clone(), paths.clone());
            tokio::spawn(mixed_load(api, load, worker, paths, end))
        })
        .collect();
    let anon = tokio::spawn(peak_anon_mib(server, end));
    // Meanwhile: when does each acknowledged version show in the Klip's value?
    let lags = watch_klip(api, &scene.klip_id, &load, end).await?;
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let anon_peak = anon.await.map_err(|e| e.to_string())?;
    let waiting = load.acked.lock().unwrap().len();
    // Every acknowledged row is there, once.
    let expected = initial as u64 + load.appended.load(Ordering::SeqCst);
    let (_, shown) = api.get(&format!("/datasources/{}", scene.ds_id)).await?;
    let row_count = shown["data"]["row_count"].as_u64().unwrap_or(0);
    let (_, value) = api.get(&format!("/klips/{}", scene.klip_id)).await?;
    let counted = value["data"]["value"]["current"].as_f64().unwrap_or(0.0) as u64;
    Outcome {
        initial,
        reads: std::mem::take(&mut *load.reads.lock().unwrap()),
        appends: std::mem::take(&mut *load.appends.lock().unwrap()),
        lags,
        conflicts: load.conflicts.load(Ordering::SeqCst),
        errors: load.errors.load(Ordering::SeqCst),
        expected,
        row_count,
        counted,
        waiting,
        seed_peak: scene.seed_peak,
        anon_peak,
        heap_before,
        code_before,
    }
    .print(server);
    Ok(())
}

/// The push part of `make bench`: `seconds` of load per source size.
pub async fn run(seconds: u64) -> Result<(), String> {
    let state = AppState::from_env().await?;
    let made = crate::bench_support::company(&state, "Push bench").await?;
    // The server under test: this binary's `serve`, on a free port, with this environment.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // PUSH_BENCH_SERVER_WRAP=program runs the server under it (e.g. heaptrack: the
    // figures read from /proc are then the wrapper's, not the server's).
    let mut server = match std::env::var_os("PUSH_BENCH_SERVER_WRAP") {
        Some(wrap) => {
            let mut c = tokio::process::Command::new(wrap);
            c.arg(exe);
            c
        }
        None => tokio::process::Command::new(exe),
    };
    let mut server = server
        .args(["serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        // PUSH_BENCH_SERVER_LOG=file keeps the server's log (RUST_LOG picks its level).
        .stderr(match std::env::var_os("PUSH_BENCH_SERVER_LOG") {
            Some(path) => std::fs::File::create(path)
                .map(std::process::Stdio::from)
                .map_err(|e| format!("the server's log: {e}"))?,
            None => std::process::Stdio::null(),
        })
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    let pid = server.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("{base}/api/v1/profile"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        return Err("the server did not start within 20 seconds".into());
    }
    let api = Api {
        http,
        base,
        key: made.api_key,
    };
    println!();
    println!(
        "data pushes: {seconds} s per size at concurrency {CONCURRENCY}, 85% dashboard reads, 15% appends of {APPEND_ROWS} rows (targets: append p50 <= 2x and p99 <= 3x the read's, 0 409s, 0 rows lost, append→Klip p99 <= 2 s, peak RSS under load <= 64 MiB whatever the size; of the RSS, heap is the anonymous memory sampled every 10 ms, code the executable's pages it touched)"
    );
    let mut result = Ok(());
    // PUSH_BENCH_SIZES=20000,200000 runs only those starting sizes.
    let sizes: Vec<usize> = match std::env::var("PUSH_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) => vec![2_000, 20_000, 100_000, 200_000],
    };
    for initial in sizes {
        result = one_size(&api, pid, initial, seconds).await;
        if result.is_err() {
            break;
        }
    }
    let _ = server.kill().await;
    result
}
