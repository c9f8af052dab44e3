//! `make bench`, the alerts part (API.md §6 alerts): how long a push takes to reach an alert's
//! receiver, and what evaluating alerts costs, with 1,000 alerts on one source.
//!
//! Three sources alike (10 number Klips each over the same rows) get the same pushes in turn:
//! one with no alerts, one with a single alert (the probe), one with the probe and 999 more
//! alerts spread over its Klips. Every push moves all 10 Klips' values; the probe's threshold
//! lies between the two values the pushes alternate, so each push fires or resolves it and
//! its webhook reaches a receiver in this process; the other alerts never cross theirs, so
//! each of their evaluations only records itself. The API and the report worker run here,
//! behind the round-trip bench's delaying proxies (every DynamoDB call pays the delay); the
//! table's stream reaches the worker as on AWS ([`pulseboard_cli::events::deliver_stream`], polled
//! every 250 ms like Lambda's poller). Printed: the push's own latency (evaluation is off
//! the request path, so 1,000 alerts must not slow it), push → delivery p50/p99 at the
//! receiver, and the request units of a push with each set of alerts, from which the write
//! units of one evaluation (and of one transition with its delivery) follow. Every figure is
//! also a ratio against one `GetItem` through the same delay, measured in the same run.

use crate::bench_support::percentile;
use crate::delay_bench::{Counts, Rig};
use axum::body::Bytes;
use axum::http::Uri;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Pushes timed per source (after 2 not timed).
const ROUNDS: usize = 20;
const WARM_UP: usize = 2;
/// Klips per source, and alerts on the busy one (the probe included).
const KLIPS: usize = 10;
const ALERTS: usize = 1_000;
/// The delay every DynamoDB and S3 call pays while timed (about a call's latency in Lambda).
const DELAY_MS: u64 = 20;
/// The probe fires above this; the pushes alternate a total above and below it.
const THRESHOLD: f64 = 100.0;
/// The target: a push with 1,000 alerts on its source, against one with none (p50).
const PUSH_TARGET: f64 = 1.2;

/// A webhook as the receiver got it: the path it was sent to, when, and its body.
type Arrival = (String, Instant, Value);

/// A receiver of webhooks on loopback: every POST is answered 204 and passed on.
async fn receiver() -> Result<(String, mpsc::UnboundedReceiver<Arrival>), String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let tx = tx.clone();
        async move {
            let at = Instant::now();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = tx.send((uri.path().to_owned(), at, body));
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, rx))
}

/// One of the three sources: its id, and the receiver path of its probe's channel.
struct Source {
    label: &'static str,
    id: String,
    probe: Option<String>,
    alerts: usize,
}

/// A webhook channel to `url`; answers its id.
async fn channel(rig: &Rig, name: &str, url: String) -> Result<String, String> {
    rig.api
        .create(
            "/channels",
            json!({"name": name, "type": "webhook", "url": url}),
        )
        .await
}

/// An alert on `klip` above `value` to `channel`.
async fn alert(
    rig: &Rig,
    name: String,
    klip: &str,
    value: f64,
    channel: &str,
) -> Result<(), String> {
    rig.api
        .create(
            "/alerts",
            json!({"name": name, "klip_id": klip, "condition": {"type": "above", "value": value},
                   "frequency": "every_time", "cooldown_minutes": 0, "notify_resolved": true,
                   "channels": [channel]}),
        )
        .await
        .map(|_| ())
}

/// A source of `KLIPS` number Klips with `alerts` alerts (the first the probe, to
/// `{hooks}/{label}`; the rest never fire).
async fn source(
    rig: &Rig,
    label: &'static str,
    alerts: usize,
    hooks: &str,
    quiet: &str,
) -> Result<Source, String> {
    let id = rig
        .api
        .create(
            "/datasources",
            json!({"name": format!("Alerted {label}"), "format": "csv"}),
        )
        .await?;
    rig.api.seed(&id, rows(0), label).await?;
    let mut klips = Vec::new();
    for k in 0..KLIPS {
        let aggregate = ["sum", "max", "avg"][k % 3];
        klips.push(
            rig.api
                .create(
                    "/klips",
                    json!({"name": format!("{label} {k}"), "type": "number", "datasource_id": id,
                           "query": {"value": "amount", "aggregate": aggregate}}),
                )
                .await?,
        );
    }
    let mut probe = None;
    if alerts > 0 {
        let path = format!("/{label}");
        let hook = channel(rig, &format!("Probe {label}"), format!("{hooks}{path}")).await?;
        alert(rig, format!("Probe {label}"), &klips[0], THRESHOLD, &hook).await?;
        probe = Some(path);
    }
    for n in 1..alerts {
        alert(
            rig,
            format!("Quiet {label} {n}"),
            &klips[n % KLIPS],
            1e12,
            quiet,
        )
        .await?;
    }
    Ok(Source {
        label,
        id,
        probe,
        alerts,
    })
}

/// The rows of push `i`: their sum (and maximum and mean) above the probe's threshold in
/// even pushes, below it in odd ones, and different from every other push's.
fn rows(i: usize) -> String {
    let high = if i.is_multiple_of(2) {
        2.0 * THRESHOLD
    } else {
        0.0
    };
    format!(
        "amount\n{}\n{}\n",
        high + i as f64 + 1.0,
        i as f64 / 2.0 + 1.0
    )
}

/// What one push did.
struct Pushed {
    /// The push request's own latency.
    push: Duration,
    /// From sending the push to its probe's webhook at the receiver.
    delivered: Option<Duration>,
    /// Everything the push made the API and the worker use.
    used: Counts,
}

/// Waits until no call has gone through the proxies for a second (the worker is done).
async fn quiet(rig: &Rig) {
    let mut last = Counts::of(&rig.proxies()).calls;
    let mut still = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Counts::of(&rig.proxies()).calls;
        if now != last {
            (last, still) = (now, Instant::now());
        } else if still.elapsed() >= Duration::from_secs(1) {
            return;
        }
    }
}

/// Push `i` to `source`, timed to its probe's webhook, and what it all used.
async fn push(
    rig: &Rig,
    source: &Source,
    i: usize,
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
) -> Result<Pushed, String> {
    while arrivals.try_recv().is_ok() {}
    let before = Counts::of(&rig.proxies());
    let sent = Instant::now();
    rig.api.seed(&source.id, rows(i), source.label).await?;
    let push = sent.elapsed();
    let mut delivered = None;
    if let Some(path) = &source.probe {
        let expected = if i.is_multiple_of(2) {
            "alert.firing"
        } else {
            "alert.resolved"
        };
        let deadline = sent + Duration::from_secs(60);
        while delivered.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, arrivals.recv()).await {
                Ok(Some((at_path, at, body))) => {
                    if at_path == *path && body["type"] == expected {
                        delivered = Some(at - sent);
                    }
                }
                _ => {
                    return Err(format!(
                        "push {i} to {}: no {expected} reached the receiver in 60 s",
                        source.label
                    ))
                }
            }
        }
    }
    quiet(rig).await;
    Ok(Pushed {
        push,
        delivered,
        used: Counts::of(&rig.proxies()).per(before, 1.0),
    })
}

/// One source's timed pushes.
#[derive(Default)]
struct Timed {
    pushes: Vec<Duration>,
    delivered: Vec<Duration>,
    used: Vec<Counts>,
}

impl Timed {
    fn add(&mut self, pushed: Pushed) {
        self.pushes.push(pushed.push);
        self.delivered.extend(pushed.delivered);
        self.used.push(pushed.used);
    }

    /// Mean write and read units per push.
    fn units(&self) -> (f64, f64) {
        let n = self.used.len().max(1) as f64;
        (
            self.used.iter().map(|c| c.write_units).sum::<f64>() / n,
            self.used.iter().map(|c| c.read_units).sum::<f64>() / n,
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The p50 of `samples` from one `GetItem` of the bench company through the proxies.
async fn get_item_p50(rig: &Rig) -> Result<Duration, String> {
    let item = platform::store::keys::company(&rig.made.company_id);
    let mut times = Vec::new();
    for _ in 0..ROUNDS + 5 {
        let t = Instant::now();
        rig.state
            .store
            .get::<Value>(&item)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    Ok(percentile(&mut times[5..], 0.5))
}

pub async fn run() -> Result<(), String> {
    // The probe's receiver is on loopback, which the worker refuses unless told.
    std::env::set_var("EGRESS_ALLOWED_NETWORKS", "127.0.0.1");
    let rig = Rig::start().await?;
    let (hooks, mut arrivals) = receiver().await?;
    let quiet_hook = channel(&rig, "Never", format!("{hooks}/never")).await?;
    let sources = [
        source(&rig, "none", 0, &hooks, &quiet_hook).await?,
        source(&rig, "one", 1, &hooks, &quiet_hook).await?,
        source(&rig, "thousand", ALERTS, &hooks, &quiet_hook).await?,
    ];
    let stream = tokio::spawn(pulseboard_cli::events::deliver_stream(rig.state.clone()));
    quiet(&rig).await;
    rig.set_delay(DELAY_MS);
    let base = get_item_p50(&rig).await?;
    let mut timed: [Timed; 3] = Default::default();
    for i in 0..WARM_UP + ROUNDS {
        for (source, timed) in sources.iter().zip(timed.iter_mut()) {
            let pushed = push(&rig, source, i, &mut arrivals).await?;
            if i >= WARM_UP {
                timed.add(pushed);
            }
        }
    }
    stream.abort();
    rig.set_delay(0);
    print(&sources, &mut timed, base);
    Ok(())
}

fn print(sources: &[Source; 3], timed: &mut [Timed; 3], base: Duration) {
    let x = |d: Duration| ms(d) / ms(base).max(f64::EPSILON);
    println!();
    println!(
        "alerts: {ROUNDS} pushes to each of three sources of {KLIPS} Klips (no alerts, 1, {ALERTS}); every DynamoDB and S3 call pays {DELAY_MS} ms; ratios to one GetItem p50 ({:.1} ms)",
        ms(base)
    );
    let mut push50 = Vec::new();
    for (source, t) in sources.iter().zip(timed.iter_mut()) {
        let p50 = percentile(&mut t.pushes, 0.5);
        let p99 = percentile(&mut t.pushes, 0.99);
        push50.push(p50);
        let (wru, rru) = t.units();
        print!(
            "  {:>5} alerts: push p50 {:>6.1} ms ({:>4.1}x) p99 {:>6.1} ms ({:>4.1}x)",
            source.alerts,
            ms(p50),
            x(p50),
            ms(p99),
            x(p99)
        );
        if !t.delivered.is_empty() {
            let d50 = percentile(&mut t.delivered, 0.5);
            let d99 = percentile(&mut t.delivered, 0.99);
            print!(
                "; push -> webhook p50 {:>6.1} ms ({:>5.1}x) p99 {:>6.1} ms ({:>5.1}x)",
                ms(d50),
                x(d50),
                ms(d99),
                x(d99)
            );
        }
        println!("; per push {wru:.1} WRU {rru:.1} RRU");
    }
    let [(w0, r0), (w1, r1), (wk, rk)] = [timed[0].units(), timed[1].units(), timed[2].units()];
    let quiet = (ALERTS - 1) as f64;
    println!(
        "  one evaluation that only records itself ({ALERTS} alerts less 1, per alert): {:.2} WRU {:.2} RRU",
        (wk - w1) / quiet,
        (rk - r1) / quiet
    );
    println!(
        "  one transition with its webhook (1 alert less none): {:.1} WRU {:.1} RRU (the evaluation, its event, the delivery queued, claimed and finished)",
        w1 - w0,
        r1 - r0
    );
    let ratio = ms(push50[2]) / ms(push50[0]).max(f64::EPSILON);
    println!(
        "  target: a push with {ALERTS} alerts on its source p50 <= {PUSH_TARGET}x one with none: {ratio:.2}x, {}",
        if ratio <= PUSH_TARGET { "met" } else { "NOT met" }
    );
}
