//! `make bench`, the round-trip part: how many database round trips each request costs on
//! its critical path, measured the way Lambda pays them. A small proxy in front of DynamoDB
//! Local and the S3 server adds a fixed delay to every call (calls that overlap pay it
//! once, calls in sequence each time); the API runs in this process against the proxies,
//! and each route's p50 and p99 are printed as ratios of one `GetItem` through the same
//! delay, with the database and S3 calls each request made. At 20 ms the ratio is about the
//! number of round trips in sequence. Each request's DynamoDB units, S3 requests and CPU time
//! give its cost per million (`crate::cost`). The figures go to `target/bench/results.json`
//! and a Markdown table to `target/bench/results.md`.

use crate::bench_support::{self, percentile};
use crate::cost;
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

/// What the calls through a proxy used, summed since it started.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    /// DynamoDB writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems).
    write_calls: AtomicU64,
    /// Read and write request units, in thousandths, as DynamoDB reports them.
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    /// S3 requests priced as PUT/COPY/POST/LIST, and as GET and the rest (DELETE is free).
    s3_tier1: AtomicU64,
    s3_tier2: AtomicU64,
}

/// A snapshot of a [`Tally`], or the difference of two.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    calls: f64,
    write_calls: f64,
    read_units: f64,
    write_units: f64,
    s3_tier1: f64,
    s3_tier2: f64,
}

impl Counts {
    fn of(proxies: &[&Proxy]) -> Counts {
        let mut c = Counts::default();
        for p in proxies {
            let t = &p.tally;
            c.calls += t.calls.load(Ordering::SeqCst) as f64;
            c.write_calls += t.write_calls.load(Ordering::SeqCst) as f64;
            c.read_units += t.read_milli.load(Ordering::SeqCst) as f64 / 1000.0;
            c.write_units += t.write_milli.load(Ordering::SeqCst) as f64 / 1000.0;
            c.s3_tier1 += t.s3_tier1.load(Ordering::SeqCst) as f64;
            c.s3_tier2 += t.s3_tier2.load(Ordering::SeqCst) as f64;
        }
        c
    }

    /// `self - before`, divided by `n`.
    fn per(self, before: Counts, n: f64) -> Counts {
        Counts {
            calls: (self.calls - before.calls) / n,
            write_calls: (self.write_calls - before.write_calls) / n,
            read_units: (self.read_units - before.read_units) / n,
            write_units: (self.write_units - before.write_units) / n,
            s3_tier1: (self.s3_tier1 - before.s3_tier1) / n,
            s3_tier2: (self.s3_tier2 - before.s3_tier2) / n,
        }
    }
}

/// A delaying HTTP proxy to one upstream.
struct Proxy {
    delay_us: AtomicU64,
    tally: Tally,
    /// DynamoDB (its calls are asked for their consumed capacity) or S3.
    dynamodb: bool,
    upstream: String,
    http: reqwest::Client,
}

const DYNAMODB_WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
const DYNAMODB_READS: [&str; 5] = [
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
];

/// The sum of `CapacityUnits` in a `ConsumedCapacity` (one object, or one per table).
fn capacity_units(consumed: &Value) -> f64 {
    match consumed {
        Value::Array(items) => items.iter().map(capacity_units).sum(),
        other => other["CapacityUnits"].as_f64().unwrap_or(0.0),
    }
}

/// Asks a DynamoDB data call for its consumed capacity: answers the operation's name and the
/// body to send (unchanged when it is not one). DynamoDB Local does not check signatures.
fn ask_capacity(headers: &HeaderMap, body: Bytes) -> (String, Bytes) {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    if !DYNAMODB_WRITES.contains(&operation.as_str())
        && !DYNAMODB_READS.contains(&operation.as_str())
    {
        return (operation, body);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut call)) => {
            call.insert("ReturnConsumedCapacity".into(), json!("TOTAL"));
            let bytes = serde_json::to_vec(&call).map(Bytes::from).unwrap_or(body);
            (operation, bytes)
        }
        _ => (operation, body),
    }
}

/// Adds what one DynamoDB call used to the tally. A refused conditional write consumes write
/// units on DynamoDB too, but DynamoDB Local reports none for it: it counts one unit per item
/// written (two in a transaction), the least DynamoDB charges.
fn tally_dynamodb(
    tally: &Tally,
    operation: &str,
    request: &[u8],
    status: StatusCode,
    response: &[u8],
) {
    let write = DYNAMODB_WRITES.contains(&operation);
    if write {
        tally.write_calls.fetch_add(1, Ordering::Relaxed);
    }
    let units = if status.is_success() {
        serde_json::from_slice::<Value>(response)
            .map(|r| capacity_units(&r["ConsumedCapacity"]))
            .unwrap_or(0.0)
    } else if write {
        let items = serde_json::from_slice::<Value>(request)
            .ok()
            .and_then(|r| r["TransactItems"].as_array().map(|i| 2.0 * i.len() as f64))
            .unwrap_or(1.0);
        let refused = String::from_utf8_lossy(response);
        if refused.contains("ConditionalCheckFailed") || refused.contains("TransactionCanceled") {
            items
        } else {
            0.0
        }
    } else {
        0.0
    };
    let milli = (units * 1000.0).round() as u64;
    if write {
        tally.write_milli.fetch_add(milli, Ordering::Relaxed);
    } else {
        tally.read_milli.fetch_add(milli, Ordering::Relaxed);
    }
}

async fn forward(
    proxy: Arc<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let tally = &proxy.tally;
    tally.calls.fetch_add(1, Ordering::Relaxed);
    let (operation, body) = if proxy.dynamodb {
        ask_capacity(&headers, body)
    } else {
        let listing = uri.query().is_some_and(|q| q.contains("list-type"));
        match method {
            Method::PUT | Method::POST => tally.s3_tier1.fetch_add(1, Ordering::Relaxed),
            Method::GET if listing => tally.s3_tier1.fetch_add(1, Ordering::Relaxed),
            Method::DELETE => 0,
            _ => tally.s3_tier2.fetch_add(1, Ordering::Relaxed),
        };
        (String::new(), body)
    };
    let delay = proxy.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body.clone());
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
            if proxy.dynamodb {
                tally_dynamodb(tally, &operation, &body, status, &bytes);
            }
            (status, out, bytes)
        }
        Err(_) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new()),
    }
}

/// Starts a proxy to `upstream`; answers it and its base URL.
async fn start_proxy(upstream: &str, dynamodb: bool) -> Result<(Arc<Proxy>, String), String> {
    let proxy = Arc::new(Proxy {
        delay_us: AtomicU64::new(0),
        tally: Tally::default(),
        dynamodb,
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

/// What a request is held to: reads and simple writes at one round trip, a session (login,
/// refresh) at two.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Write,
    Session,
}

/// One request the bench makes: how to send it (round `i`), the status it must get, and the
/// function (`template.yaml` binary) that serves it on Lambda.
struct Case {
    name: &'static str,
    expect: u16,
    function: &'static str,
    kind: Kind,
    send: Box<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
}

/// An append of `rows` (CSV, with its header) to the data source `id`, with the API key.
fn append_case(
    name: &'static str,
    (http, base, key): (&reqwest::Client, &str, &str),
    id: &str,
    rows: String,
) -> Case {
    let (http, url, key) = (
        http.clone(),
        format!("{base}/api/v1/datasources/{id}/data"),
        key.to_owned(),
    );
    Case {
        name,
        expect: 200,
        function: "datasources",
        kind: Kind::Write,
        send: Box::new(move |_| {
            http.post(&url)
                .header("kf-api-key", &key)
                .header("content-type", "text/csv")
                .body(rows.clone())
        }),
    }
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
    let (db_proxy, db_base) = start_proxy(&dynamodb, true).await?;
    let (s3_proxy, s3_base) = start_proxy(&s3, false).await?;
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

    // Dashboards for the deletes (one per request), a report to generate, and a second
    // source for the 1,000-row pushes.
    let mut doomed = Vec::new();
    for i in 0..3 * ROUNDS {
        let d = api
            .call(
                Method::POST,
                "/dashboards",
                Some(json!({"name": format!("Doomed {i}")})),
            )
            .await?;
        doomed.push(d["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let doomed = Arc::new(std::sync::Mutex::new(doomed));
    let report = api
        .call(
            Method::POST,
            "/reports",
            Some(json!({"name": "Weekly", "dashboard_id": dash_id, "format": "json"})),
        )
        .await?;
    let report_id = report["data"]["id"].as_str().unwrap_or_default().to_owned();
    let pushed = api
        .call(
            Method::POST,
            "/datasources",
            Some(json!({"name": "Pushed", "format": "csv"})),
        )
        .await?;
    let pushed_id = pushed["data"]["id"].as_str().unwrap_or_default().to_owned();
    let r = api
        .http
        .put(api.url(&format!("/datasources/{pushed_id}/data")))
        .header("kf-api-key", &api.key)
        .header("content-type", "text/csv")
        .body(format!("day,region,amount\n{today},r0,1\n"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("seeding the pushed source answered {}", r.status()));
    }
    let user_id = made.user_id.clone();

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
            function: "auth",
            kind: Kind::Read,
            send: get("/profile".into()),
        },
        Case {
            name: "GET /usage",
            expect: 200,
            function: "auth",
            kind: Kind::Read,
            send: get("/usage".into()),
        },
        Case {
            name: "GET /auth/verify",
            expect: 200,
            function: "auth",
            kind: Kind::Read,
            send: get("/auth/verify".into()),
        },
        Case {
            name: "GET /api-keys",
            expect: 200,
            function: "auth",
            kind: Kind::Read,
            send: get("/api-keys".into()),
        },
        Case {
            name: "GET /users",
            expect: 200,
            function: "users",
            kind: Kind::Read,
            send: get("/users".into()),
        },
        Case {
            name: "GET /users/{id}",
            expect: 200,
            function: "users",
            kind: Kind::Read,
            send: get(format!("/users/{user_id}")),
        },
        Case {
            name: "GET /roles",
            expect: 200,
            function: "users",
            kind: Kind::Read,
            send: get("/roles".into()),
        },
        Case {
            name: "GET /groups",
            expect: 200,
            function: "users",
            kind: Kind::Read,
            send: get("/groups".into()),
        },
        Case {
            name: "GET /clients",
            expect: 200,
            function: "clients",
            kind: Kind::Read,
            send: get("/clients".into()),
        },
        Case {
            name: "GET /reports",
            expect: 200,
            function: "reports",
            kind: Kind::Read,
            send: get("/reports".into()),
        },
        Case {
            name: "GET /reports/{id}",
            expect: 200,
            function: "reports",
            kind: Kind::Read,
            send: get(format!("/reports/{report_id}")),
        },
        Case {
            name: "GET /api-keys/{id} (API key)",
            expect: 200,
            function: "auth",
            kind: Kind::Read,
            send: get(format!("/api-keys/{key_id}")),
        },
        Case {
            name: "GET /api-keys/{id} (JWT)",
            expect: 200,
            function: "auth",
            kind: Kind::Read,
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
            function: "klips",
            kind: Kind::Read,
            send: get("/klips".into()),
        },
        Case {
            name: "GET /klips/{id}",
            expect: 200,
            function: "klips",
            kind: Kind::Read,
            send: get(format!("/klips/{}", klip_ids[0])),
        },
        Case {
            name: "GET /datasources",
            expect: 200,
            function: "datasources",
            kind: Kind::Read,
            send: get("/datasources".into()),
        },
        Case {
            name: "GET /datasources/{id}",
            expect: 200,
            function: "datasources",
            kind: Kind::Read,
            send: get(format!("/datasources/{ds_id}")),
        },
        Case {
            name: "GET /dashboards",
            expect: 200,
            function: "dashboards",
            kind: Kind::Read,
            send: get("/dashboards".into()),
        },
        Case {
            name: "GET /dashboards/{id} (6 Klips)",
            expect: 200,
            function: "dashboards",
            kind: Kind::Read,
            send: get(format!("/dashboards/{dash_id}")),
        },
        Case {
            name: "GET /public/dashboards/{token}",
            expect: 200,
            function: "dashboards",
            kind: Kind::Read,
            send: {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                Box::new(move |_| http.get(format!("{base}/api/v1/public/dashboards/{token}")))
            },
        },
        Case {
            name: "POST /dashboards (create)",
            expect: 201,
            function: "dashboards",
            kind: Kind::Write,
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
            function: "klips",
            kind: Kind::Write,
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
        append_case(
            "POST /datasources/{id}/data (append 20 rows)",
            (&http, &base, &key),
            &ds_id,
            format!(
                "day,region,amount\n{}",
                format!("{today},r1,5\n").repeat(20)
            ),
        ),
        Case {
            name: "DELETE /dashboards/{id}",
            expect: 200,
            function: "dashboards",
            kind: Kind::Write,
            send: {
                let (http, base, key) = (http.clone(), base.clone(), key.clone());
                Box::new(move |_| {
                    let id = doomed
                        .lock()
                        .map(|mut d| d.pop().unwrap_or_default())
                        .unwrap_or_default();
                    http.delete(format!("{base}/api/v1/dashboards/{id}"))
                        .header("kf-api-key", &key)
                })
            },
        },
        Case {
            name: "POST /api-keys (create)",
            expect: 201,
            function: "auth",
            kind: Kind::Write,
            send: {
                let (http, base, key) = (http.clone(), base.clone(), key.clone());
                Box::new(move |i| {
                    http.post(format!("{base}/api/v1/api-keys"))
                        .header("kf-api-key", &key)
                        .json(&json!({"name": format!("Bench key {i}"), "expires_in_days": 30}))
                })
            },
        },
        append_case(
            "POST /datasources/{id}/data (1,000 rows)",
            (&http, &base, &key),
            &pushed_id,
            (0..1000).fold(String::from("day,region,amount\n"), |mut rows, i| {
                rows.push_str(&format!("{today},r{},{}\n", i % 5, i % 97));
                rows
            }),
        ),
        Case {
            name: "POST /reports/{id}/generate",
            expect: 202,
            function: "reports",
            kind: Kind::Write,
            send: {
                let (http, base, key, id) =
                    (http.clone(), base.clone(), key.clone(), report_id.clone());
                Box::new(move |_| {
                    http.post(format!("{base}/api/v1/reports/{id}/generate"))
                        .header("kf-api-key", &key)
                })
            },
        },
        Case {
            name: "POST /auth/login",
            expect: 200,
            function: "auth",
            kind: Kind::Session,
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
            function: "auth",
            kind: Kind::Session,
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

    let memory = cost::function_memory(
        &std::fs::read_to_string("template.yaml").map_err(|e| format!("template.yaml: {e}"))?,
    )?;
    let flood = bench_support::company_with_limits(&state, "Flood", 2).await?;
    let proxies = [db_proxy.as_ref(), s3_proxy.as_ref()];
    let mut report = Vec::new();
    let mut costs = Vec::new();
    let mut met_all = true;
    println!();
    println!(
        "round trips: every DynamoDB and S3 call of the API pays the delay (overlapping calls once); {ROUNDS} sequential requests per route; ratios to one GetItem through the same delay"
    );
    println!("  calls: DynamoDB and S3 calls per request; WRU/RRU: DynamoDB write/read request units per request");
    for delay_ms in [0u64, 4, 20] {
        db_proxy.delay_us.store(delay_ms * 1000, Ordering::SeqCst);
        s3_proxy.delay_us.store(delay_ms * 1000, Ordering::SeqCst);
        let item = platform::store::keys::company(&made.company_id);
        let mut baseline = Vec::new();
        let (before, cpu_before) = (Counts::of(&proxies), cpu_time());
        for _ in 0..ROUNDS + 5 {
            let t = Instant::now();
            state
                .store
                .get::<Value>(&item)
                .await
                .map_err(|e| e.to_string())?;
            baseline.push(t.elapsed());
        }
        let bare_cpu = (cpu_time() - cpu_before) / (ROUNDS + 5) as f64;
        let bare_units = Counts::of(&proxies).per(before, (ROUNDS + 5) as f64);
        let base50 = percentile(&mut baseline[5..], 0.5);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  at {delay_ms:>2} ms per call: GetItem p50 {:.2} ms ({:.1} RRU)",
            ms(base50),
            bare_units.read_units
        );
        // The bare read the cost target compares with: one GetItem per request, no auth, no
        // limits, 128 MB.
        let bare = cost::Usage {
            wall_ms: ms(base50),
            cpu_ms: bare_cpu,
            memory_mb: 128.0,
            read_units: bare_units.read_units,
            ..cost::Usage::default()
        };
        let mut profile_writes = 0.0;
        for case in &mut cases {
            let mut samples = Vec::new();
            let (before, cpu_before) = (Counts::of(&proxies), cpu_time());
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
            let cpu_ms = (cpu_time() - cpu_before) / ROUNDS as f64;
            let used = Counts::of(&proxies).per(before, ROUNDS as f64);
            if case.name == "GET /profile" {
                profile_writes = used.write_calls;
            }
            let (p50, p99) = (
                percentile(&mut samples, 0.5),
                percentile(&mut samples, 0.99),
            );
            let ratio = |d: Duration| d.as_secs_f64() / base50.as_secs_f64();
            let target = match (delay_ms, case.kind) {
                (20, Kind::Session) => Some((2.3, None)),
                (20, _) => Some((1.3, None)),
                (4, Kind::Read) => Some((1.5, Some(3.0))),
                _ => None,
            };
            let met =
                target.map(|(t50, t99)| ratio(p50) <= t50 && t99.is_none_or(|t| ratio(p99) <= t));
            met_all &= met.unwrap_or(true);
            println!(
                "    {:46} p50 {:7.2} ms {:5.2}x  p99 {:5.2}x  {:4.1} calls  {:4.1} WRU {:4.1} RRU  {}",
                case.name,
                ms(p50),
                ratio(p50),
                ratio(p99),
                used.calls,
                used.write_units,
                used.read_units,
                match (target, met) {
                    (Some((t50, None)), Some(ok)) => format!("target p50 <= {t50}x: {}", if ok { "met" } else { "NOT met" }),
                    (Some((t50, Some(t99))), Some(ok)) => format!("target p50 <= {t50}x, p99 <= {t99}x: {}", if ok { "met" } else { "NOT met" }),
                    _ => String::new(),
                }
            );
            report.push(json!({"delay_ms": delay_ms, "route": case.name, "function": case.function,
                "p50_ms": ms(p50), "p50_ratio": ratio(p50), "p99_ratio": ratio(p99), "calls": used.calls,
                "write_calls": used.write_calls, "write_units": used.write_units, "read_units": used.read_units,
                "s3_requests": used.s3_tier1 + used.s3_tier2, "cpu_ms": cpu_ms, "target_met": met}));
            if delay_ms == 4 {
                let memory_mb = memory.get(case.function).copied().ok_or_else(|| {
                    format!("template.yaml has no function built from {}", case.function)
                })?;
                let usage = cost::Usage {
                    wall_ms: ms(p50),
                    cpu_ms,
                    memory_mb,
                    read_units: used.read_units,
                    write_units: used.write_units,
                    s3_tier1: used.s3_tier1,
                    s3_tier2: used.s3_tier2,
                };
                costs.push((case.name, case.kind, usage, bare));
            }
        }
        let flooded = flood_once(
            &api.http,
            &api.base,
            &flood.api_key,
            &proxies,
            profile_writes,
        )
        .await?;
        println!(
            "    {:46} p50 {:7.2} ms {:5.2}x  {} of {} refused; {:.2} writes, {:.2} WRU per refused request (target <= 0.1 writes)",
            "GET /profile refused (429) in a flood",
            ms(flooded.p50),
            flooded.p50.as_secs_f64() / base50.as_secs_f64(),
            flooded.refused,
            flooded.sent,
            flooded.writes_per_refused,
            flooded.units_per_refused,
        );
        met_all &= flooded.writes_per_refused <= 0.1;
        report.push(json!({"delay_ms": delay_ms, "route": "GET /profile refused (429) in a flood",
            "p50_ms": ms(flooded.p50), "p50_ratio": flooded.p50.as_secs_f64() / base50.as_secs_f64(),
            "refused": flooded.refused, "sent": flooded.sent, "writes_per_refused": flooded.writes_per_refused,
            "write_units_per_refused": flooded.units_per_refused, "target_met": flooded.writes_per_refused <= 0.1}));
    }
    println!("  targets at 20 ms: reads, creates, updates and deletes p50 <= 1.3x; login and refresh <= 2.3x; at 4 ms reads p50 <= 1.5x, p99 <= 3x");

    // Cost: a million requests of each kind, from what they used at 4 ms per call.
    println!();
    println!(
        "cost per million requests (from the 4 ms run; prices and billing model in cli/src/cost.rs): HTTP API + Lambda arm64 + DynamoDB on-demand + S3"
    );
    let mut cost_rows = Vec::new();
    let mut markdown = String::from(
        "| request | p50 at 20 ms (x GetItem) | calls | WRU | RRU | billed ms | $ per million |\n|---|---|---|---|---|---|---|\n",
    );
    let at20 = |name: &str| {
        report
            .iter()
            .find(|r| r["delay_ms"] == 20 && r["route"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut bare_cost = 0.0;
    for (name, kind, usage, bare) in &costs {
        bare_cost = bare.per_million();
        let dollars = usage.per_million();
        let vs_bare = dollars / bare_cost;
        let read_target = (*kind == Kind::Read).then_some(vs_bare <= 1.5);
        met_all &= read_target.unwrap_or(true);
        println!(
            "    {:46} {:3} MB  billed {:4} ms  {:4.1} WRU {:4.1} RRU  ${:6.3}  {:4.2}x the bare read{}",
            name,
            usage.memory_mb,
            usage.billed_ms(),
            usage.write_units,
            usage.read_units,
            dollars,
            vs_bare,
            match read_target {
                Some(true) => "  (target <= 1.5x: met)",
                Some(false) => "  (target <= 1.5x: NOT met)",
                None => "",
            }
        );
        let row = at20(name);
        markdown.push_str(&format!(
            "| `{name}` | {:.2} | {:.1} | {:.1} | {:.1} | {} | {:.3} ({:.2}x) |\n",
            row["p50_ratio"].as_f64().unwrap_or(0.0),
            row["calls"].as_f64().unwrap_or(0.0),
            usage.write_units,
            usage.read_units,
            usage.billed_ms(),
            dollars,
            vs_bare,
        ));
        cost_rows.push(json!({"route": name, "memory_mb": usage.memory_mb, "billed_ms": usage.billed_ms(),
            "cpu_ms": usage.cpu_ms, "write_units": usage.write_units, "read_units": usage.read_units,
            "dollars_per_million": dollars, "vs_bare_read": vs_bare}));
    }
    println!(
        "    {:46} 128 MB  bare Lambda + one GetItem, no auth, no limits: ${bare_cost:.3} per million",
        "bare read (baseline)"
    );
    if let Some((_, _, _, bare)) = costs.first() {
        markdown.push_str(&format!(
            "| bare read: one `GetItem`, no auth or limits, 128 MB | 1.00 | 1.0 | 0.0 | {:.1} | {} | {bare_cost:.3} (1.00x) |\n",
            bare.read_units,
            bare.billed_ms(),
        ));
    }
    println!(
        "  every round-trip, flood and cost target above: {}",
        if met_all { "met" } else { "NOT all met" }
    );
    let dir = std::path::Path::new("target/bench");
    if std::fs::create_dir_all(dir).is_ok() {
        let results = json!({"round_trips": report, "cost": cost_rows, "bare_read_dollars_per_million": bare_cost,
            "prices": {"lambda_request": cost::LAMBDA_REQUEST, "lambda_gb_second_arm64": cost::LAMBDA_GB_SECOND_ARM64,
                "dynamodb_write_unit": cost::DYNAMODB_WRITE_UNIT, "dynamodb_read_unit": cost::DYNAMODB_READ_UNIT,
                "http_api_request": cost::HTTP_API_REQUEST, "s3_tier1_request": cost::S3_TIER1_REQUEST,
                "s3_tier2_request": cost::S3_TIER2_REQUEST}});
        let _ = std::fs::write(
            dir.join("results.json"),
            serde_json::to_vec_pretty(&results).unwrap_or_default(),
        );
        let _ = std::fs::write(dir.join("results.md"), markdown);
        println!("  written to target/bench/results.json and target/bench/results.md");
    }
    Ok(())
}

/// What a flood of one company did.
struct Flooded {
    sent: usize,
    refused: usize,
    /// p50 of the refused requests.
    p50: Duration,
    /// Database writes per refused request: all the flood's writes, less what the admitted
    /// requests make (`GET /profile`'s writes in the same run).
    writes_per_refused: f64,
    units_per_refused: f64,
}

/// Floods one company (per-second limit 2) with bursts of concurrent `GET /profile`.
async fn flood_once(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    proxies: &[&Proxy],
    admitted_writes: f64,
) -> Result<Flooded, String> {
    const BURST: usize = 25;
    let before = Counts::of(proxies);
    let mut refused_times = Vec::new();
    let mut admitted = 0usize;
    for _ in 0..ROUNDS / 4 {
        let burst = (0..BURST).map(|_| async {
            let t = Instant::now();
            let r = http
                .get(format!("{base}/api/v1/profile"))
                .header("kf-api-key", key)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            r.bytes().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, t.elapsed()))
        });
        for answer in futures::future::join_all(burst).await {
            match answer? {
                (429, t) => refused_times.push(t),
                (200, _) => admitted += 1,
                (other, _) => return Err(format!("the flood answered {other}")),
            }
        }
    }
    let used = Counts::of(proxies).per(before, 1.0);
    let refused = refused_times.len();
    let n = refused.max(1) as f64;
    // An admitted read's write units are about its write calls (small items).
    let writes = (used.write_calls - admitted as f64 * admitted_writes).max(0.0);
    let units = (used.write_units - admitted as f64 * admitted_writes).max(0.0);
    Ok(Flooded {
        sent: refused + admitted,
        refused,
        p50: percentile(&mut refused_times, 0.5),
        writes_per_refused: writes / n,
        units_per_refused: units / n,
    })
}

/// CPU time this process has used (user and system, every thread), in ms.
fn cpu_time() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
