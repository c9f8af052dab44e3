//! `make bench`, the round-trip part: how many database round trips each request costs on
//! its critical path, measured the way Lambda pays them. A small proxy in front of DynamoDB
//! Local and the S3 server adds a fixed delay to every call (calls that overlap pay it
//! once, calls in sequence each time); the API runs in this process against the proxies,
//! and each route's p50 and p99 are printed as ratios of one `GetItem` through the same
//! delay, with the database and S3 calls each request made. At 20 ms the ratio is about the
//! number of round trips in sequence. The figures go to `target/bench/round-trips.json` too.

use crate::bench_support::{self, percentile};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use platform::AppState;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests per route and delay.
const ROUNDS: usize = 20;
/// Rows of the data source behind the dashboard's 6 Klips.
const SOURCE_ROWS: usize = 10_000;

/// A delaying HTTP proxy to one upstream.
struct Proxy {
    delay_us: AtomicU64,
    calls: AtomicU64,
    upstream: String,
    http: reqwest::Client,
}

async fn forward(
    proxy: Arc<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    proxy.calls.fetch_add(1, Ordering::Relaxed);
    let delay = proxy.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "content-length" && name != "connection" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(r) => {
            let status = r.status();
            let mut out = HeaderMap::new();
            for (name, value) in r.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    out.insert(name, value.clone());
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            (status, out, bytes)
        }
        Err(_) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new()),
    }
}

/// Starts a proxy to `upstream`; answers it and its base URL.
async fn start_proxy(upstream: &str) -> Result<(Arc<Proxy>, String), String> {
    let proxy = Arc::new(Proxy {
        delay_us: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        upstream: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let shared = proxy.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            forward(shared.clone(), method, uri, headers, body)
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((proxy, base))
}

/// One request the bench makes: how to send it (round `i`), and the status it must get.
struct Case {
    name: &'static str,
    expect: u16,
    send: Box<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut r = self
            .http
            .request(method, self.url(path))
            .header("kf-api-key", &self.key);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{path}: {status} {body}"));
        }
        Ok(body)
    }
}

/// Runs the round-trip bench at 0, 4 and 20 ms per call.
pub async fn run() -> Result<(), String> {
    let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .map_err(|_| "the round-trip bench needs AWS_ENDPOINT_URL_DYNAMODB (a local DynamoDB)")?;
    let s3 = std::env::var("AWS_ENDPOINT_URL_S3")
        .map_err(|_| "the round-trip bench needs AWS_ENDPOINT_URL_S3 (a local S3 server)")?;
    let (db_proxy, db_base) = start_proxy(&dynamodb).await?;
    let (s3_proxy, s3_base) = start_proxy(&s3).await?;
    // The API under test reaches both only through the proxies.
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &db_base);
    std::env::set_var("AWS_ENDPOINT_URL_S3", &s3_base);
    let state = AppState::from_env().await;
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb);
    std::env::set_var("AWS_ENDPOINT_URL_S3", &s3);
    let state = state?;
    let made = bench_support::company(&state, "Round trips").await?;
    let base = bench_support::serve_here(&state).await?;
    let api = Api {
        http: reqwest::Client::new(),
        base,
        key: made.api_key.clone(),
    };

    // The scene: a 10,000-row source, 6 Klips over it on a dashboard, a published link.
    let ds = api
        .call(
            Method::POST,
            "/datasources",
            Some(json!({"name": "Orders", "format": "csv"})),
        )
        .await?;
    let ds_id = ds["data"]["id"].as_str().unwrap_or_default().to_owned();
    let mut csv = String::from("day,region,amount\n");
    let today = chrono::Utc::now().date_naive();
    for i in 0..SOURCE_ROWS {
        let day = today - chrono::Duration::days((i % 60) as i64);
        csv.push_str(&format!("{day},r{},{}\n", i % 5, 10 + i % 90));
    }
    let r = api
        .http
        .put(api.url(&format!("/datasources/{ds_id}/data")))
        .header("kf-api-key", &api.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("seeding the source answered {}", r.status()));
    }
    let mut klip_ids = Vec::new();
    for (i, query) in [
        json!({"value": "amount", "time_column": "day", "time_bucket": "day", "range": "last_30_days"}),
        json!({"value": "amount", "time_column": "day", "group_by": "region", "range": "this_month"}),
        json!({"aggregate": "count", "time_column": "day", "range": "last_7_days"}),
        json!({"value": "amount", "aggregate": "avg"}),
        json!({"value": "amount", "aggregate": "max", "time_column": "day", "time_bucket": "week"}),
        json!({"value": "amount", "group_by": "region", "limit": 3}),
    ]
    .into_iter()
    .enumerate()
    {
        let klip = api
            .call(
                Method::POST,
                "/klips",
                Some(json!({"name": format!("Klip {i}"), "type": "line", "datasource_id": ds_id, "query": query})),
            )
            .await?;
        klip_ids.push(klip["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let dash = api
        .call(Method::POST, "/dashboards", Some(json!({"name": "Sales"})))
        .await?;
    let dash_id = dash["data"]["id"].as_str().unwrap_or_default().to_owned();
    let instances: Vec<Value> = klip_ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"klip_id": id, "region": "main", "position": i}))
        .collect();
    api.call(
        Method::PUT,
        &format!("/dashboards/{dash_id}/klip-instances"),
        Some(json!({"klips": instances})),
    )
    .await?;
    let link = api
        .call(
            Method::POST,
            &format!("/dashboards/{dash_id}/published-links"),
            Some(json!({})),
        )
        .await?;
    let token = link["data"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let keys = api.call(Method::GET, "/api-keys", None).await?;
    let key_id = keys["data"]["api_keys"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let login = |http: &reqwest::Client, base: &str| {
        http.post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": made.email, "password": bench_support::PASSWORD}))
    };
    let session: Value = login(&api.http, &api.base)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let access = session["data"]["access"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // One login per refresh the bench makes (a refresh token is good for one refresh).
    let mut sessions = Vec::new();
    for _ in 0..3 * ROUNDS {
        let session: Value = login(&api.http, &api.base)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let token = session["data"]["refresh"].as_str().unwrap_or_default();
        sessions.push(token.to_owned());
    }
    let refresh_tokens = Arc::new(std::sync::Mutex::new(sessions));

    let (http, base, key) = (api.http.clone(), api.base.clone(), api.key.clone());
    let get = move |path: String| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        Box::new(move |_: usize| {
            http.get(format!("{base}/api/v1{path}"))
                .header("kf-api-key", &key)
        }) as Box<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>
    };
    let (http, base, key) = (api.http.clone(), api.base.clone(), api.key.clone());
    let mut cases = vec![
        Case {
            name: "GET /profile",
            expect: 200,
            send: get("/profile".into()),
        },
        Case {
            name: "GET /usage",
            expect: 200,
            send: get("/usage".into()),
        },
        Case {
            name: "GET /api-keys/{id} (API key)",
            expect: 200,
            send: get(format!("/api-keys/{key_id}")),
        },
        Case {
            name: "GET /api-keys/{id} (JWT)",
            expect: 200,
            send: {
                let (http, base, access, key_id) =
                    (http.clone(), base.clone(), access.clone(), key_id.clone());
                Box::new(move |_| {
                    http.get(format!("{base}/api/v1/api-keys/{key_id}"))
                        .bearer_auth(&access)
                })
            },
        },
        Case {
            name: "GET /klips",
            expect: 200,
            send: get("/klips".into()),
        },
        Case {
            name: "GET /klips/{id}",
            expect: 200,
            send: get(format!("/klips/{}", klip_ids[0])),
        },
        Case {
            name: "GET /datasources",
            expect: 200,
            send: get("/datasources".into()),
        },
        Case {
            name: "GET /datasources/{id}",
            expect: 200,
            send: get(format!("/datasources/{ds_id}")),
        },
        Case {
            name: "GET /dashboards",
            expect: 200,
            send: get("/dashboards".into()),
        },
        Case {
            name: "GET /dashboards/{id} (6 Klips)",
            expect: 200,
            send: get(format!("/dashboards/{dash_id}")),
        },
        Case {
            name: "GET /public/dashboards/{token}",
            expect: 200,
            send: {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                Box::new(move |_| http.get(format!("{base}/api/v1/public/dashboards/{token}")))
            },
        },
        Case {
            name: "POST /dashboards (create)",
            expect: 201,
            send: {
                let (http, base, key) = (http.clone(), base.clone(), key.clone());
                Box::new(move |i| {
                    http.post(format!("{base}/api/v1/dashboards"))
                        .header("kf-api-key", &key)
                        .json(&json!({"name": format!("Bench {i} {}", domain::ids::new_id())}))
                })
            },
        },
        Case {
            name: "PUT /klips/{id} (rename)",
            expect: 200,
            send: {
                let (http, base, key, id) =
                    (http.clone(), base.clone(), key.clone(), klip_ids[5].clone());
                Box::new(move |i| {
                    http.put(format!("{base}/api/v1/klips/{id}"))
                        .header("kf-api-key", &key)
                        .json(&json!({"description": format!("round {i}")}))
                })
            },
        },
        Case {
            name: "POST /datasources/{id}/data (append 20 rows)",
            expect: 200,
            send: {
                let (http, base, key, id) =
                    (http.clone(), base.clone(), key.clone(), ds_id.clone());
                let rows = format!(
                    "day,region,amount\n{}",
                    format!("{today},r1,5\n").repeat(20)
                );
                Box::new(move |_| {
                    http.post(format!("{base}/api/v1/datasources/{id}/data"))
                        .header("kf-api-key", &key)
                        .header("content-type", "text/csv")
                        .body(rows.clone())
                })
            },
        },
        Case {
            name: "POST /auth/login",
            expect: 200,
            send: {
                let (http, base) = (http.clone(), base.clone());
                let email = made.email.clone();
                Box::new(move |_| {
                    http.post(format!("{base}/api/v1/auth/login"))
                        .json(&json!({"email": email, "password": bench_support::PASSWORD}))
                })
            },
        },
        Case {
            name: "POST /auth/refresh",
            expect: 200,
            send: {
                let (http, base) = (http.clone(), base.clone());
                Box::new(move |_| {
                    let token = refresh_tokens
                        .lock()
                        .map(|mut t| t.pop().unwrap_or_default())
                        .unwrap_or_default();
                    http.post(format!("{base}/api/v1/auth/refresh"))
                        .json(&json!({"refresh": token}))
                })
            },
        },
    ];

    let mut report = Vec::new();
    println!();
    println!(
        "round trips: every DynamoDB and S3 call of the API pays the delay (overlapping calls once); {ROUNDS} sequential requests per route; ratios to one GetItem through the same delay"
    );
    for delay_ms in [0u64, 4, 20] {
        db_proxy.delay_us.store(delay_ms * 1000, Ordering::SeqCst);
        s3_proxy.delay_us.store(delay_ms * 1000, Ordering::SeqCst);
        let item = platform::store::keys::company(&made.company_id);
        let mut baseline = Vec::new();
        for _ in 0..ROUNDS + 5 {
            let t = Instant::now();
            state
                .store
                .get::<Value>(&item)
                .await
                .map_err(|e| e.to_string())?;
            baseline.push(t.elapsed());
        }
        let base50 = percentile(&mut baseline[5..], 0.5);
        println!(
            "  at {delay_ms:>2} ms per call: GetItem p50 {:.2} ms",
            base50.as_secs_f64() * 1000.0
        );
        for case in &mut cases {
            let mut samples = Vec::new();
            let calls_before =
                db_proxy.calls.load(Ordering::SeqCst) + s3_proxy.calls.load(Ordering::SeqCst);
            for i in 0..ROUNDS {
                let t = Instant::now();
                let r = (case.send)(i).send().await.map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                r.bytes().await.map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if status != case.expect {
                    return Err(format!("{} answered {status}", case.name));
                }
            }
            let calls = (db_proxy.calls.load(Ordering::SeqCst)
                + s3_proxy.calls.load(Ordering::SeqCst)
                - calls_before) as f64
                / ROUNDS as f64;
            let (p50, p99) = (
                percentile(&mut samples, 0.5),
                percentile(&mut samples, 0.99),
            );
            let ratio = |d: Duration| d.as_secs_f64() / base50.as_secs_f64();
            println!(
                "    {:46} p50 {:7.2} ms {:5.2}x   p99 {:5.2}x   {:4.1} calls",
                case.name,
                p50.as_secs_f64() * 1000.0,
                ratio(p50),
                ratio(p99),
                calls
            );
            report.push(json!({"delay_ms": delay_ms, "route": case.name, "p50_ms": p50.as_secs_f64() * 1000.0,
                "p50_ratio": ratio(p50), "p99_ratio": ratio(p99), "calls": calls}));
        }
    }
    println!("  targets at 20 ms: reads <= 1.3x, create/update/delete <= 1.3x, login and refresh <= 2.3x");
    let dir = std::path::Path::new("target/bench");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(
            dir.join("round-trips.json"),
            serde_json::to_vec_pretty(&report).unwrap_or_default(),
        );
    }
    Ok(())
}
