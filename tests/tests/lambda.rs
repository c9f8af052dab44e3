//! The Lambda harness: each packaged `bootstrap` (`make package`, under `target/lambda/`)
//! runs as a Lambda runs, against a small Lambda Runtime API server (the documented
//! `/2018-06-01/runtime/invocation/next` and `/response` protocol), and gets every saved
//! event under `tests/events/`: the API Gateway v2 events to the API functions, the stream
//! batch and the scheduler's tick to the report worker. This is what `sam local invoke -e`
//! does inside a container. Run it with `make lambda-test` (CI does, after `make package`);
//! it is not part of `make test`, which does not build release binaries.
//!
//! Each function's footprint (peak RSS and CPU from /proc) is printed and written to
//! `target/lambda/footprint.json`; a peak RSS over half the template's memory for the
//! function fails the test.
//!
//! `LAMBDA_DIR` overrides where the bootstraps are (default `target/lambda`).

use pulseboard_cli::runtime_api::{Outcome, RuntimeApi, INIT};
use pulseboard_tests::events::{filled_with_secrets, saved, EVENTS};
use pulseboard_tests::{json, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A packaged function running against its own Runtime API.
struct Function {
    name: String,
    child: tokio::process::Child,
    runtime: RuntimeApi,
    count: usize,
    /// Everything the function wrote to stdout and stderr (its log lines).
    output: Arc<std::sync::Mutex<String>>,
}

/// Appends everything `from` writes to `into`.
fn collect(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<std::sync::Mutex<String>>,
) {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = into.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
}

fn lambda_dir() -> std::path::PathBuf {
    match std::env::var_os("LAMBDA_DIR") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lambda"),
    }
}

/// A process's peak resident memory (KiB, `VmHWM`) and CPU time so far (ms, user + system),
/// from Linux's /proc.
fn usage(pid: Option<u32>) -> Option<(u64, u64)> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th, in clock ticks (100 a second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((peak, ticks * 10))
}

/// Each function's memory in template.yaml (its own `MemorySize`, else the global one), by
/// binary name.
fn template_memory_mib() -> std::collections::HashMap<String, u64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let global = template["Globals"]["Function"]["MemorySize"]
        .as_u64()
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() {
            let memory = resource["Properties"]["MemorySize"]
                .as_u64()
                .unwrap_or(global);
            out.insert(binary.to_owned(), memory);
        }
    }
    out
}

impl Function {
    async fn start(name: &str) -> Self {
        let bootstrap = lambda_dir().join(name).join("bootstrap");
        assert!(
            bootstrap.is_file(),
            "{} is missing: run `make package` first",
            bootstrap.display()
        );
        let runtime = RuntimeApi::start().await.unwrap();
        let mut command = tokio::process::Command::new(&bootstrap);
        let child = runtime
            .lambda_env(&mut command, name, "harness")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bootstrap.display()));
        let mut child = child;
        let output = Arc::new(std::sync::Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Function {
            output,
            name: name.to_owned(),
            child,
            runtime,
            count: 0,
        }
    }

    /// Sends one event and waits (up to 30 s) for the function's answer to it.
    async fn invoke(&mut self, event: Value) -> Outcome {
        self.count += 1;
        let id = format!("{}-{}", self.name, self.count);
        let (answered, outcome) = self
            .runtime
            .invoke(&id, event, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        if answered == INIT {
            panic!("{}: init failed: {outcome:?}", self.name);
        }
        assert_eq!(answered, id, "{}: answered another invocation", self.name);
        outcome
    }

    /// Stops the function and answers what it logged.
    async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = self.output.lock().unwrap().clone();
        out
    }
}

/// An API Gateway v2 answer: its status and its body as JSON.
fn http_answer(name: &str, outcome: Outcome) -> (u16, Value) {
    let Outcome::Response(answer) = outcome else {
        panic!("{name}: the function failed: {outcome:?}");
    };
    let status = answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: not an API Gateway answer: {answer}"));
    assert_eq!(answer["isBase64Encoded"], false, "{name}: {answer}");
    let body = answer["body"].as_str().unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
    (status as u16, body)
}

#[tokio::test]
async fn every_saved_event_runs_through_its_packaged_function() {
    let app = TestApp::spawn().await;
    assert_eq!(saved(), EVENTS.len(), "every saved event is listed");
    let mut functions: Vec<Function> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();
    // CPU milliseconds each event cost its (warm) process.
    let mut cpu: Vec<(&str, &str, u64)> = Vec::new();
    for (function, name, expected) in EVENTS {
        let index = match functions.iter().position(|f| f.name == *function) {
            Some(i) => i,
            None => {
                functions.push(Function::start(function).await);
                functions.len() - 1
            }
        };
        let (text, held) = filled_with_secrets(&app, name).await;
        secrets.extend(held);
        let event: Value = serde_json::from_str(&text).unwrap();
        let before = usage(functions[index].child.id()).map_or(0, |u| u.1);
        let outcome = functions[index].invoke(event).await;
        let after = usage(functions[index].child.id()).map_or(0, |u| u.1);
        cpu.push((function, name, after.saturating_sub(before)));
        let (status, body) = http_answer(name, outcome);
        assert_eq!(status, *expected, "{name}: {body}");
        assert_eq!(body["meta"]["success"], status < 400, "{name}: {body}");
        // Keys and tokens the API answered with are secrets too.
        for field in [
            "api_key",
            "key",
            "token",
            "refresh",
            "access",
            "access_token",
        ] {
            if let Some(value) = body["data"][field].as_str().filter(|v| v.len() >= 16) {
                secrets.push(value.to_owned());
            }
        }
    }
    assert!(
        secrets.len() >= 6,
        "the events hold secrets: {}",
        secrets.len()
    );
    // One warm process answered every event of its function, as a warm Lambda does.
    let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    for function in [
        "auth",
        "users",
        "clients",
        "datasources",
        "klips",
        "dashboards",
        "reports",
        "notifications",
    ] {
        assert!(names.contains(&function), "no event went to {function}");
    }
    // Each process's footprint after all its events, against the memory the template gives
    // its function (printed, and written to target/lambda/footprint.json for the README).
    let memory = template_memory_mib();
    let mut footprint = serde_json::Map::new();
    for f in &functions {
        let (peak_kib, cpu_ms) = usage(f.child.id()).expect("/proc tells a process's usage");
        let heaviest = cpu
            .iter()
            .filter(|(function, _, _)| *function == f.name)
            .max_by_key(|(_, _, ms)| *ms)
            .unwrap();
        let given = memory[&f.name];
        println!(
            "footprint {:<12} peak RSS {:>5.1} MiB of {given} MiB, CPU {cpu_ms} ms over {} events, heaviest {} ({} ms)",
            f.name,
            peak_kib as f64 / 1024.0,
            f.count,
            heaviest.1,
            heaviest.2
        );
        assert!(
            peak_kib / 1024 * 2 <= given,
            "{}: peak RSS {peak_kib} KiB is over half the {given} MiB the template gives it",
            f.name
        );
        footprint.insert(
            f.name.clone(),
            json!({"peak_rss_kib": peak_kib, "cpu_ms": cpu_ms, "events": f.count,
                   "heaviest_event": heaviest.1, "heaviest_cpu_ms": heaviest.2,
                   "memory_mib": given}),
        );
    }
    let _ = std::fs::write(
        lambda_dir().join("footprint.json"),
        serde_json::to_string_pretty(&footprint).unwrap(),
    );
    let mut logs = String::new();
    for f in functions {
        logs.push_str(&f.stop().await);
    }
    // One request line and one metric line (EMF) per invocation, and no secret anywhere.
    let requests = logs
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .count();
    let metrics: Vec<Value> = logs
        .lines()
        .filter(|l| l.starts_with("{\"_aws\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(requests, EVENTS.len(), "a request line per event");
    assert_eq!(metrics.len(), EVENTS.len(), "a metric line per event");
    for line in &metrics {
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Pulseboard"
        );
        assert!(
            line["Latency"].is_number() && line["StoreCalls"].is_u64(),
            "{line}"
        );
    }
    assert!(
        metrics.iter().any(|l| l["StoreCalls"].as_u64() > Some(0)),
        "database calls are counted"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the logs: {:.12}...",
            secret
        );
    }
    for marker in ["pb_live_", "Bearer ", "eyJ"] {
        assert!(!logs.contains(marker), "the logs show {marker}");
    }
}

#[tokio::test]
async fn the_worker_takes_a_stream_batch_and_a_tick() {
    let app = TestApp::spawn().await;
    let (_, ds) = json(
        app.post("/datasources", json!({"name": "Harness", "format": "csv"}))
            .await,
    )
    .await;
    let ds = ds["data"]["id"].as_str().unwrap().to_owned();
    let r = app
        .http
        .put(app.url(&format!("/datasources/{ds}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body("day,n\n2026-11-01,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, klip) = json(
        app.post(
            "/klips",
            json!({"name": "Count", "type": "number", "datasource_id": ds, "query": {"aggregate": "count"}}),
        )
        .await,
    )
    .await;
    let klip = klip["data"]["id"].as_str().unwrap().to_owned();
    let (status, report) = json(
        app.post(
            "/reports",
            json!({"name": "Harness", "klip_ids": [klip], "format": "json"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{report}");
    let report = report["data"]["id"].as_str().unwrap().to_owned();
    let (status, run) = json(
        app.post(&format!("/reports/{report}/generate"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{run}");
    let run = run["data"]["id"].as_str().unwrap().to_owned();

    let dir = pulseboard_tests::events::dir().join("worker");
    let stream = std::fs::read_to_string(dir.join("stream-queued-run.json"))
        .unwrap()
        .replace("{{COMPANY_ID}}", &app.company.company_id)
        .replace("{{REPORT_ID}}", &report)
        .replace("{{RUN_ID}}", &run);
    let mut worker = Function::start("report-worker").await;
    let Outcome::Response(answer) = worker.invoke(serde_json::from_str(&stream).unwrap()).await
    else {
        panic!("the worker failed the stream batch");
    };
    assert_eq!(answer, json!({"batchItemFailures": []}));
    // The run is generated (by this worker, or already by the test process's own stream
    // delivery: a run is claimed once, so either way exactly once).
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, got) = json(app.get(&format!("/reports/{report}/runs/{run}")).await).await;
        status = got["data"]["status"].clone();
        if status == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "succeeded");

    let tick = std::fs::read_to_string(dir.join("scheduler-tick.json")).unwrap();
    let Outcome::Response(ticked) = worker.invoke(serde_json::from_str(&tick).unwrap()).await
    else {
        panic!("the worker failed the tick");
    };
    for field in ["queued", "skipped", "taken_over", "deferred", "swept"] {
        assert!(ticked[field].is_u64(), "{field}: {ticked}");
    }
    let logs = worker.stop().await;
    let kinds: Vec<String> = logs
        .lines()
        .filter(|l| l.starts_with("{\"_aws\""))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["stream", "tick"], "a metric line per invocation");
}

/// The packaged audit recorder records a saved stream batch (a dashboard created by a user)
/// as an event of the company's log, once however often the batch comes.
#[tokio::test]
async fn the_packaged_audit_recorder_records_a_saved_stream_batch() {
    let app = TestApp::spawn().await;
    let dashboard = domain::ids::new_id();
    let user = domain::ids::new_id();
    let dir = pulseboard_tests::events::dir().join("audit");
    let batch = std::fs::read_to_string(dir.join("stream-dashboard-created.json"))
        .unwrap()
        .replace("{{COMPANY_ID}}", &app.company.company_id)
        .replace("{{DASHBOARD_ID}}", &dashboard)
        .replace("{{USER_ID}}", &user);
    let mut recorder = Function::start("audit-recorder").await;
    for _ in 0..2 {
        let Outcome::Response(answer) =
            recorder.invoke(serde_json::from_str(&batch).unwrap()).await
        else {
            panic!("the recorder failed the stream batch");
        };
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
    recorder.stop().await;
    let (status, body) = json(
        app.get(&format!("/audit-events?resource_id={dashboard}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["total"], 1, "{body}");
    let event = &body["data"]["audit_events"][0];
    assert_eq!(event["action"], "created");
    assert_eq!(
        event["actor"],
        json!({"type": "user", "id": user, "email": "saved@example.test"})
    );
    assert_eq!(event["request_id"], "saved-event-request");
    assert_eq!(event["time"], "2026-12-07T08:00:00.250Z");
    assert_eq!(event["resource"]["name"], "Saved event");
}
