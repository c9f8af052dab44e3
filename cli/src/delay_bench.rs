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
use platform::bootstrap::Bootstrapped;
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
pub(crate) struct Counts {
    pub(crate) calls: f64,
    write_calls: f64,
    pub(crate) read_units: f64,
    pub(crate) write_units: f64,
    s3_tier1: f64,
    s3_tier2: f64,
}

impl Counts {
    pub(crate) fn of(proxies: &[&Proxy]) -> Counts {
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
    pub(crate) fn per(self, before: Counts, n: f64) -> Counts {
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
pub(crate) struct Proxy {
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
    // PROXY_TRACE=1 prints each call as it arrives (ms since the first, the operation), to
    // see which calls a request makes in sequence.
    if std::env::var_os("PROXY_TRACE").is_some() {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let since = START.get_or_init(std::time::Instant::now).elapsed();
        eprintln!("proxy {:10.2} ms {operation}", since.as_secs_f64() * 1000.0);
    }
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
    /// A read with an API key this instance has not seen (its first request).
    First,
    /// A read with an access token this instance has not seen (its first request).
    FirstToken,
    Write,
    Session,
}

/// How the bench sends one of its requests in round `i`.
type Request = Box<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>;

/// One request the bench makes: how to send it (round `i`), the status it must get, and the
/// function (`template.yaml` binary) that serves it on Lambda.
struct Case {
    name: &'static str,
    expect: u16,
    function: &'static str,
    kind: Kind,
    send: Request,
}

/// The API under test, called as the bench company's admin (with its API key unless said).
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    base: String,
    pub(crate) key: String,
}

impl Api {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
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

    /// `POST path` with `body`; answers the id of what it created.
    pub(crate) async fn create(&self, path: &str, body: Value) -> Result<String, String> {
        let made = self.call(Method::POST, path, Some(body)).await?;
        Ok(made["data"]["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Replaces the data of the source `id` with `csv`; `what` names the source in the error.
    pub(crate) async fn seed(&self, id: &str, csv: String, what: &str) -> Result<(), String> {
        let r = self
            .http
            .put(self.url(&format!("/datasources/{id}/data")))
            .header("kf-api-key", &self.key)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("seeding {what} answered {}", r.status()));
        }
        Ok(())
    }

    /// A login as the admin `email` (with the bench password), to send.
    fn login(&self, email: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/auth/login"))
            .json(&json!({"email": email, "password": bench_support::PASSWORD}))
    }

    /// Logs in as `email`; answers the session (`data.access`, `data.refresh`).
    pub(crate) async fn session(&self, email: &str) -> Result<Value, String> {
        self.login(email)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    /// `GET path` with the API key, every round.
    fn get_with_key(&self, path: &str) -> Request {
        let (api, path) = (self.clone(), path.to_owned());
        Box::new(move |_| api.http.get(api.url(&path)).header("kf-api-key", &api.key))
    }

    /// `GET path` with the JWT `access`, every round.
    fn get_with_jwt(&self, path: &str, access: &str) -> Request {
        let (api, path, access) = (self.clone(), path.to_owned(), access.to_owned());
        Box::new(move |_| api.http.get(api.url(&path)).bearer_auth(&access))
    }

    /// `GET path` with no credentials, every round.
    fn get_anonymous(&self, path: &str) -> Request {
        let (api, path) = (self.clone(), path.to_owned());
        Box::new(move |_| api.http.get(api.url(&path)))
    }

    /// `method path` with the API key and, when given, `body(i)` as JSON in round `i`.
    fn with_key(&self, method: Method, path: &str, body: Option<fn(usize) -> Value>) -> Request {
        let (api, url) = (self.clone(), self.url(path));
        Box::new(move |i| {
            let request = api
                .http
                .request(method.clone(), &url)
                .header("kf-api-key", &api.key);
            match body {
                Some(body) => request.json(&body(i)),
                None => request,
            }
        })
    }

    /// An append of `rows` (CSV, with its header) to the data source `id`, every round.
    fn append(&self, id: &str, rows: String) -> Request {
        let (api, url) = (self.clone(), self.url(&format!("/datasources/{id}/data")));
        Box::new(move |_| {
            api.http
                .post(&url)
                .header("kf-api-key", &api.key)
                .header("content-type", "text/csv")
                .body(rows.clone())
        })
    }

    /// `DELETE /dashboards/{id}` of the next of `doomed` (one per round).
    fn delete_next_dashboard(&self, doomed: Vec<String>) -> Request {
        let (api, doomed) = (self.clone(), std::sync::Mutex::new(doomed));
        Box::new(move |_| {
            let id = doomed
                .lock()
                .map(|mut d| d.pop().unwrap_or_default())
                .unwrap_or_default();
            api.http
                .delete(api.url(&format!("/dashboards/{id}")))
                .header("kf-api-key", &api.key)
        })
    }

    /// A login as `email`, every round.
    fn login_every_round(&self, email: &str) -> Request {
        let (api, email) = (self.clone(), email.to_owned());
        Box::new(move |_| api.login(&email))
    }

    /// `GET path` with the next of `keys` (API keys) or, with `bearer`, of `tokens` (JWTs):
    /// a credential this instance has not seen, every round (its first request).
    fn get_with_fresh(&self, path: &str, credentials: Vec<String>, bearer: bool) -> Request {
        let (api, url) = (self.clone(), self.url(path));
        let credentials = std::sync::Mutex::new(credentials);
        Box::new(move |_| {
            let credential = credentials
                .lock()
                .map(|mut c| c.pop().unwrap_or_default())
                .unwrap_or_default();
            let request = api.http.get(&url);
            if bearer {
                request.bearer_auth(credential)
            } else {
                request.header("kf-api-key", credential)
            }
        })
    }

    /// `POST /auth/refresh` with the next of `tokens` (a refresh token is good for one).
    fn refresh_next(&self, tokens: Vec<String>) -> Request {
        let (api, tokens) = (self.clone(), std::sync::Mutex::new(tokens));
        Box::new(move |_| {
            let token = tokens
                .lock()
                .map(|mut t| t.pop().unwrap_or_default())
                .unwrap_or_default();
            api.http
                .post(api.url("/auth/refresh"))
                .json(&json!({"refresh": token}))
        })
    }
}

/// What the whole run shares: the delaying proxies in front of DynamoDB Local and the S3
/// server, the state the API in this process serves (reaching both only through them), the
/// bench company, and a client of that API.
pub(crate) struct Rig {
    db_proxy: Arc<Proxy>,
    s3_proxy: Arc<Proxy>,
    /// The DynamoDB proxy's base URL, for a client of the bench's own (`crate::write_bench`).
    pub(crate) db_base: String,
    pub(crate) state: AppState,
    pub(crate) made: Bootstrapped,
    pub(crate) api: Api,
}

impl Rig {
    /// Starts the proxies, the state behind them, the bench company and the API.
    pub(crate) async fn start() -> Result<Rig, String> {
        let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").map_err(|_| {
            "the round-trip bench needs AWS_ENDPOINT_URL_DYNAMODB (a local DynamoDB)"
        })?;
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
        Ok(Rig {
            db_proxy,
            s3_proxy,
            db_base,
            state,
            made,
            api,
        })
    }

    pub(crate) fn proxies(&self) -> [&Proxy; 2] {
        [self.db_proxy.as_ref(), self.s3_proxy.as_ref()]
    }

    /// Makes every call through either proxy pay `delay_ms`.
    pub(crate) fn set_delay(&self, delay_ms: u64) {
        self.db_proxy
            .delay_us
            .store(delay_ms * 1000, Ordering::SeqCst);
        self.s3_proxy
            .delay_us
            .store(delay_ms * 1000, Ordering::SeqCst);
    }
}

/// What the bench's requests act on, made before any is timed.
struct Scene {
    /// The day the rows were made for.
    today: chrono::NaiveDate,
    /// The 10,000-row source, the 6 Klips over it, their dashboard and its published link.
    ds_id: String,
    klip_ids: Vec<String>,
    dash_id: String,
    token: String,
    /// The admin's API key's id, and a JWT of theirs.
    key_id: String,
    access: String,
    /// One refresh token per refresh the bench makes (a refresh token is good for one).
    refresh_tokens: Vec<String>,
    /// Credentials no request has used yet, one per round: API keys, and JWTs (from the
    /// logins that made the refresh tokens).
    fresh_keys: Vec<String>,
    fresh_tokens: Vec<String>,
    /// Dashboards for the deletes (one per request), a report to generate, and a second
    /// source for the 1,000-row pushes.
    doomed: Vec<String>,
    report_id: String,
    pushed_id: String,
}

impl Scene {
    /// Makes it all through `api`, as the admin `email`.
    async fn build(api: &Api, email: &str) -> Result<Scene, String> {
        let (ds_id, today) = orders_source(api).await?;
        let klip_ids = six_klips(api, &ds_id).await?;
        let (dash_id, token) = published_dashboard(api, &klip_ids).await?;
        let keys = api.call(Method::GET, "/api-keys", None).await?;
        let key_id = keys["data"]["api_keys"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (access, refresh_tokens, fresh_tokens) = sessions(api, email).await?;
        let fresh_keys = fresh_keys(api).await?;
        let doomed = doomed_dashboards(api).await?;
        let report_id = api
            .create(
                "/reports",
                json!({"name": "Weekly", "dashboard_id": dash_id, "format": "json"}),
            )
            .await?;
        let pushed_id = api
            .create("/datasources", json!({"name": "Pushed", "format": "csv"}))
            .await?;
        let one_row = format!("day,region,amount\n{today},r0,1\n");
        api.seed(&pushed_id, one_row, "the pushed source").await?;
        Ok(Scene {
            today,
            ds_id,
            klip_ids,
            dash_id,
            token,
            key_id,
            access,
            refresh_tokens,
            fresh_keys,
            fresh_tokens,
            doomed,
            report_id,
            pushed_id,
        })
    }
}

/// The `SOURCE_ROWS`-row source "Orders" over the last 60 days; answers its id and today.
async fn orders_source(api: &Api) -> Result<(String, chrono::NaiveDate), String> {
    let ds_id = api
        .create("/datasources", json!({"name": "Orders", "format": "csv"}))
        .await?;
    let mut csv = String::from("day,region,amount\n");
    let today = chrono::Utc::now().date_naive();
    for i in 0..SOURCE_ROWS {
        let day = today - chrono::Duration::days((i % 60) as i64);
        csv.push_str(&format!("{day},r{},{}\n", i % 5, 10 + i % 90));
    }
    api.seed(&ds_id, csv, "the source").await?;
    Ok((ds_id, today))
}

/// 6 Klips of different queries over the source `ds_id`; answers their ids.
async fn six_klips(api: &Api, ds_id: &str) -> Result<Vec<String>, String> {
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
    Ok(klip_ids)
}

/// The dashboard "Sales" with the Klips `klip_ids`, published; answers its id and the
/// link's token.
async fn published_dashboard(api: &Api, klip_ids: &[String]) -> Result<(String, String), String> {
    let dash_id = api.create("/dashboards", json!({"name": "Sales"})).await?;
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
    Ok((dash_id, token))
}

/// Logins as `email`: one for its JWT, then one per refresh the bench makes; answers the
/// JWT and the refresh tokens.
async fn sessions(api: &Api, email: &str) -> Result<(String, Vec<String>, Vec<String>), String> {
    let session = api.session(email).await?;
    let access = session["data"]["access"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut refresh_tokens = Vec::new();
    let mut fresh_tokens = Vec::new();
    for _ in 0..3 * ROUNDS {
        let session = api.session(email).await?;
        let token = session["data"]["refresh"].as_str().unwrap_or_default();
        refresh_tokens.push(token.to_owned());
        let access = session["data"]["access"].as_str().unwrap_or_default();
        fresh_tokens.push(access.to_owned());
    }
    Ok((access, refresh_tokens, fresh_tokens))
}

/// API keys of the admin that no request has used yet, one per round of a case.
async fn fresh_keys(api: &Api) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for i in 0..3 * ROUNDS {
        let made = api
            .call(
                Method::POST,
                "/api-keys",
                Some(json!({"name": format!("Fresh {i}"), "expires_in_days": 30})),
            )
            .await?;
        keys.push(made["data"]["key"].as_str().unwrap_or_default().to_owned());
    }
    Ok(keys)
}

/// A dashboard for each delete the bench makes; answers their ids.
async fn doomed_dashboards(api: &Api) -> Result<Vec<String>, String> {
    let mut doomed = Vec::new();
    for i in 0..3 * ROUNDS {
        let id = api
            .create("/dashboards", json!({"name": format!("Doomed {i}")}))
            .await?;
        doomed.push(id);
    }
    Ok(doomed)
}

/// Every request the bench times, in the order it prints them: the reads, the writes, then
/// the sessions.
fn cases(api: &Api, mut scene: Scene, made: &Bootstrapped) -> Vec<Case> {
    let mut cases = read_cases(api, &scene, &made.user_id);
    // A credential's first request on this instance (as on a new Lambda instance): verified
    // first, then counted while the read runs.
    let klip = format!("/klips/{}", scene.klip_ids[0]);
    let fresh = [
        (
            "GET /klips/{id} (an API key's first request)",
            std::mem::take(&mut scene.fresh_keys),
            false,
        ),
        (
            "GET /klips/{id} (a JWT's first request)",
            std::mem::take(&mut scene.fresh_tokens),
            true,
        ),
    ];
    for (name, credentials, bearer) in fresh {
        cases.push(Case {
            name,
            expect: 200,
            function: "klips",
            kind: if bearer {
                Kind::FirstToken
            } else {
                Kind::First
            },
            send: api.get_with_fresh(&klip, credentials, bearer),
        });
    }
    let refresh_tokens = std::mem::take(&mut scene.refresh_tokens);
    cases.extend(write_cases(api, scene));
    cases.extend(session_cases(api, &made.email, refresh_tokens));
    cases
}

/// The reads, as a table of (name, function, request): each must answer 200.
fn read_cases(api: &Api, scene: &Scene, user_id: &str) -> Vec<Case> {
    let key = |path: &str| api.get_with_key(path);
    let key_path = format!("/api-keys/{}", scene.key_id);
    let reads: Vec<(&'static str, &'static str, Request)> = vec![
        ("GET /profile", "auth", key("/profile")),
        ("GET /usage", "auth", key("/usage")),
        ("GET /auth/verify", "auth", key("/auth/verify")),
        ("GET /api-keys", "auth", key("/api-keys")),
        ("GET /users", "users", key("/users")),
        (
            "GET /users/{id}",
            "users",
            key(&format!("/users/{user_id}")),
        ),
        ("GET /roles", "users", key("/roles")),
        ("GET /groups", "users", key("/groups")),
        ("GET /clients", "clients", key("/clients")),
        ("GET /reports", "reports", key("/reports")),
        (
            "GET /reports/{id}",
            "reports",
            key(&format!("/reports/{}", scene.report_id)),
        ),
        ("GET /api-keys/{id} (API key)", "auth", key(&key_path)),
        (
            "GET /api-keys/{id} (JWT)",
            "auth",
            api.get_with_jwt(&key_path, &scene.access),
        ),
        ("GET /klips", "klips", key("/klips")),
        (
            "GET /klips/{id}",
            "klips",
            key(&format!("/klips/{}", scene.klip_ids[0])),
        ),
        ("GET /datasources", "datasources", key("/datasources")),
        (
            "GET /datasources/{id}",
            "datasources",
            key(&format!("/datasources/{}", scene.ds_id)),
        ),
        ("GET /dashboards", "dashboards", key("/dashboards")),
        (
            "GET /dashboards/{id} (6 Klips)",
            "dashboards",
            key(&format!("/dashboards/{}", scene.dash_id)),
        ),
        (
            "GET /public/dashboards/{token}",
            "dashboards",
            api.get_anonymous(&format!("/public/dashboards/{}", scene.token)),
        ),
    ];
    reads
        .into_iter()
        .map(|(name, function, send)| Case {
            name,
            expect: 200,
            function,
            kind: Kind::Read,
            send,
        })
        .collect()
}

/// The writes, as a table of (name, status, function, request).
fn write_cases(api: &Api, scene: Scene) -> Vec<Case> {
    let today = scene.today;
    let create_dashboard = api.with_key(
        Method::POST,
        "/dashboards",
        Some(|i| json!({"name": format!("Bench {i} {}", domain::ids::new_id())})),
    );
    let rename_klip = api.with_key(
        Method::PUT,
        &format!("/klips/{}", scene.klip_ids[5]),
        Some(|i| json!({"description": format!("round {i}")})),
    );
    let twenty_rows = format!(
        "day,region,amount\n{}",
        format!("{today},r1,5\n").repeat(20)
    );
    let append_20 = api.append(&scene.ds_id, twenty_rows);
    let delete_dashboard = api.delete_next_dashboard(scene.doomed);
    let create_key = api.with_key(
        Method::POST,
        "/api-keys",
        Some(|i| json!({"name": format!("Bench key {i}"), "expires_in_days": 30})),
    );
    let thousand_rows = (0..1000).fold(String::from("day,region,amount\n"), |mut rows, i| {
        rows.push_str(&format!("{today},r{},{}\n", i % 5, i % 97));
        rows
    });
    let append_1000 = api.append(&scene.pushed_id, thousand_rows);
    let generate = format!("/reports/{}/generate", scene.report_id);
    let generate = api.with_key(Method::POST, &generate, None);
    let writes: Vec<(&'static str, u16, &'static str, Request)> = vec![
        (
            "POST /dashboards (create)",
            201,
            "dashboards",
            create_dashboard,
        ),
        ("PUT /klips/{id} (rename)", 200, "klips", rename_klip),
        (
            "POST /datasources/{id}/data (append 20 rows)",
            200,
            "datasources",
            append_20,
        ),
        (
            "DELETE /dashboards/{id}",
            200,
            "dashboards",
            delete_dashboard,
        ),
        ("POST /api-keys (create)", 201, "auth", create_key),
        (
            "POST /datasources/{id}/data (1,000 rows)",
            200,
            "datasources",
            append_1000,
        ),
        ("POST /reports/{id}/generate", 202, "reports", generate),
    ];
    writes
        .into_iter()
        .map(|(name, expect, function, send)| Case {
            name,
            expect,
            function,
            kind: Kind::Write,
            send,
        })
        .collect()
}

/// The sessions: a login as `email`, and a refresh with the next of `refresh_tokens`.
fn session_cases(api: &Api, email: &str, refresh_tokens: Vec<String>) -> Vec<Case> {
    let session = |name, send| Case {
        name,
        expect: 200,
        function: "auth",
        kind: Kind::Session,
        send,
    };
    vec![
        session("POST /auth/login", api.login_every_round(email)),
        session("POST /auth/refresh", api.refresh_next(refresh_tokens)),
    ]
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `GetItem` through the proxies at a delay: the p50 every ratio is of, and the bare
/// read the cost target compares with (one `GetItem` per request, no auth, no limits,
/// 128 MB).
struct Baseline {
    p50: Duration,
    bare: cost::Usage,
}

/// A case's `ROUNDS` requests: p50, p99, CPU time and what each used, per request.
struct Timed {
    p50: Duration,
    p99: Duration,
    cpu_ms: f64,
    used: Counts,
}

/// What one request of a kind used at 4 ms per call, and the bare read's, to price.
struct Priced {
    name: &'static str,
    kind: Kind,
    usage: cost::Usage,
    bare: cost::Usage,
}

/// The bench once set up: the rig, the requests to time, each function's memory (from
/// `template.yaml`) and the API key of the company flooded.
struct Bench {
    rig: Rig,
    cases: Vec<Case>,
    memory: std::collections::HashMap<String, f64>,
    flood_key: String,
}

impl Bench {
    /// Times the baseline, every case and a flood at `delay_ms` per call, printing a line
    /// each and noting them in `results`.
    async fn at_delay(&self, delay_ms: u64, results: &mut Results) -> Result<(), String> {
        self.rig.set_delay(delay_ms);
        let baseline = self.baseline(delay_ms).await?;
        let mut profile_writes = 0.0;
        for case in &self.cases {
            let timed = self.time_case(case).await?;
            if case.name == "GET /profile" {
                profile_writes = timed.used.write_calls;
            }
            results.route(delay_ms, case, &timed, baseline.p50);
            if delay_ms == 4 {
                results
                    .costs
                    .push(self.priced(case, &timed, baseline.bare)?);
            }
        }
        let api = &self.rig.api;
        let proxies = self.rig.proxies();
        let flooded = flood_once(
            &api.http,
            &api.base,
            &self.flood_key,
            &proxies,
            profile_writes,
        )
        .await?;
        results.flood(delay_ms, &flooded, baseline.p50);
        Ok(())
    }

    /// Times `ROUNDS` + 5 `GetItem`s of the company's item (the first 5 a warm-up) and
    /// prints their p50.
    async fn baseline(&self, delay_ms: u64) -> Result<Baseline, String> {
        let proxies = self.rig.proxies();
        let item = platform::store::keys::company(&self.rig.made.company_id);
        let mut baseline = Vec::new();
        let (before, cpu_before) = (Counts::of(&proxies), cpu_time());
        for _ in 0..ROUNDS + 5 {
            let t = Instant::now();
            self.rig
                .state
                .store
                .get::<Value>(&item)
                .await
                .map_err(|e| e.to_string())?;
            baseline.push(t.elapsed());
        }
        let bare_cpu = (cpu_time() - cpu_before) / (ROUNDS + 5) as f64;
        let bare_units = Counts::of(&proxies).per(before, (ROUNDS + 5) as f64);
        let base50 = percentile(&mut baseline[5..], 0.5);
        println!(
            "  at {delay_ms:>2} ms per call: GetItem p50 {:.2} ms ({:.1} RRU)",
            ms(base50),
            bare_units.read_units
        );
        let bare = cost::Usage {
            wall_ms: ms(base50),
            cpu_ms: bare_cpu,
            memory_mb: 128.0,
            read_units: bare_units.read_units,
            ..cost::Usage::default()
        };
        Ok(Baseline { p50: base50, bare })
    }

    /// Sends `case` `ROUNDS` times in sequence, each answer checked against its status.
    async fn time_case(&self, case: &Case) -> Result<Timed, String> {
        let proxies = self.rig.proxies();
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
        let (p50, p99) = (
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99),
        );
        Ok(Timed {
            p50,
            p99,
            cpu_ms,
            used,
        })
    }

    /// What `case` used, at its function's memory, to price against `bare`.
    fn priced(&self, case: &Case, timed: &Timed, bare: cost::Usage) -> Result<Priced, String> {
        let memory_mb =
            self.memory.get(case.function).copied().ok_or_else(|| {
                format!("template.yaml has no function built from {}", case.function)
            })?;
        let usage = cost::Usage {
            wall_ms: ms(timed.p50),
            cpu_ms: timed.cpu_ms,
            memory_mb,
            read_units: timed.used.read_units,
            write_units: timed.used.write_units,
            s3_tier1: timed.used.s3_tier1,
            s3_tier2: timed.used.s3_tier2,
        };
        Ok(Priced {
            name: case.name,
            kind: case.kind,
            usage,
            bare,
        })
    }
}

/// A route's targets at a delay: p50 and, when held to one, p99, as ratios of a `GetItem`.
fn target(delay_ms: u64, kind: Kind) -> Option<(f64, Option<f64>)> {
    match (delay_ms, kind) {
        (20, Kind::Session) => Some((2.3, None)),
        // A key: verify (the caller and the key record it names), then count alongside the
        // read: two round trips. A token: its caller as of the login is the guess, so the
        // count, the session check and the read go together: one.
        (20, Kind::First) => Some((2.3, None)),
        (20, Kind::FirstToken) => Some((1.3, None)),
        (20, _) => Some((1.3, None)),
        (4, Kind::Read) => Some((1.5, Some(3.0))),
        _ => None,
    }
}

/// A route line's last column: its target and whether it was met (empty without one).
fn target_text(target: Option<(f64, Option<f64>)>, met: Option<bool>) -> String {
    match (target, met) {
        (Some((t50, None)), Some(ok)) => format!(
            "target p50 <= {t50}x: {}",
            if ok { "met" } else { "NOT met" }
        ),
        (Some((t50, Some(t99))), Some(ok)) => format!(
            "target p50 <= {t50}x, p99 <= {t99}x: {}",
            if ok { "met" } else { "NOT met" }
        ),
        _ => String::new(),
    }
}

/// What the run gathers as it goes: every route's figures at every delay (for
/// results.json), what each request used at 4 ms (priced at the end), and whether every
/// target so far was met.
struct Results {
    report: Vec<Value>,
    costs: Vec<Priced>,
    met_all: bool,
}

impl Results {
    /// Prints a case's line at `delay_ms` against the `GetItem` p50 `base50`, and notes it.
    fn route(&mut self, delay_ms: u64, case: &Case, timed: &Timed, base50: Duration) {
        let (p50, p99, used) = (timed.p50, timed.p99, &timed.used);
        let ratio = |d: Duration| d.as_secs_f64() / base50.as_secs_f64();
        let target = target(delay_ms, case.kind);
        let met = target.map(|(t50, t99)| ratio(p50) <= t50 && t99.is_none_or(|t| ratio(p99) <= t));
        self.met_all &= met.unwrap_or(true);
        println!(
            "    {:46} p50 {:7.2} ms {:5.2}x  p99 {:5.2}x  {:4.1} calls  {:4.1} WRU {:4.1} RRU  {}",
            case.name,
            ms(p50),
            ratio(p50),
            ratio(p99),
            used.calls,
            used.write_units,
            used.read_units,
            target_text(target, met)
        );
        self.report.push(json!({"delay_ms": delay_ms, "route": case.name, "function": case.function,
            "p50_ms": ms(p50), "p50_ratio": ratio(p50), "p99_ratio": ratio(p99), "calls": used.calls,
            "write_calls": used.write_calls, "write_units": used.write_units, "read_units": used.read_units,
            "s3_requests": used.s3_tier1 + used.s3_tier2, "cpu_ms": timed.cpu_ms, "target_met": met}));
    }

    /// Prints the flood's line at `delay_ms` against the `GetItem` p50 `base50`, and notes it.
    fn flood(&mut self, delay_ms: u64, flooded: &Flooded, base50: Duration) {
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
        self.met_all &= flooded.writes_per_refused <= 0.1;
        self.report.push(json!({"delay_ms": delay_ms, "route": "GET /profile refused (429) in a flood",
            "p50_ms": ms(flooded.p50), "p50_ratio": flooded.p50.as_secs_f64() / base50.as_secs_f64(),
            "refused": flooded.refused, "sent": flooded.sent, "writes_per_refused": flooded.writes_per_refused,
            "write_units_per_refused": flooded.units_per_refused, "target_met": flooded.writes_per_refused <= 0.1}));
    }

    /// Prints the cost part and whether every target was met, and writes the figures to
    /// target/bench.
    fn finish(mut self) {
        // Cost: a million requests of each kind, from what they used at 4 ms per call.
        println!();
        println!(
            "cost per million requests (from the 4 ms run; prices and billing model in cli/src/cost.rs): HTTP API + Lambda arm64 + DynamoDB on-demand + S3"
        );
        let table = cost_table(&self.costs, &self.report);
        self.met_all &= table.met;
        println!(
            "  every round-trip, flood and cost target above: {}",
            if self.met_all { "met" } else { "NOT all met" }
        );
        write_results(self.report, table);
    }
}

/// The cost part's figures: a row per request for results.json and for results.md, the
/// bare read's price, and whether every read's cost target was met.
struct CostTable {
    rows: Vec<Value>,
    markdown: String,
    bare_cost: f64,
    met: bool,
}

/// Prints what a million of each request in `costs` cost, against the bare read, with
/// `report`'s 20 ms figures alongside in the Markdown; answers the table.
fn cost_table(costs: &[Priced], report: &[Value]) -> CostTable {
    let mut table = CostTable {
        rows: Vec::new(),
        markdown: String::from(
            "| request | p50 at 20 ms (x GetItem) | calls | WRU | RRU | billed ms | $ per million |\n|---|---|---|---|---|---|---|\n",
        ),
        bare_cost: 0.0,
        met: true,
    };
    let at20 = |name: &str| {
        report
            .iter()
            .find(|r| r["delay_ms"] == 20 && r["route"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    for priced in costs {
        table.add(priced, at20);
    }
    let bare_cost = table.bare_cost;
    println!(
        "    {:46} 128 MB  bare Lambda + one GetItem, no auth, no limits: ${bare_cost:.3} per million",
        "bare read (baseline)"
    );
    if let Some(Priced { bare, .. }) = costs.first() {
        table.markdown.push_str(&format!(
            "| bare read: one `GetItem`, no auth or limits, 128 MB | 1.00 | 1.0 | 0.0 | {:.1} | {} | {bare_cost:.3} (1.00x) |\n",
            bare.read_units,
            bare.billed_ms(),
        ));
    }
    table
}

impl CostTable {
    /// Prints one request's cost and adds its rows; `at20` finds a route's 20 ms figures.
    fn add(&mut self, priced: &Priced, at20: impl Fn(&str) -> Value) {
        let Priced {
            name, kind, usage, ..
        } = priced;
        self.bare_cost = priced.bare.per_million();
        let dollars = usage.per_million();
        let vs_bare = dollars / self.bare_cost;
        let read_target = (*kind == Kind::Read).then_some(vs_bare <= 1.5);
        self.met &= read_target.unwrap_or(true);
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
        self.markdown.push_str(&format!(
            "| `{name}` | {:.2} | {:.1} | {:.1} | {:.1} | {} | {:.3} ({:.2}x) |\n",
            row["p50_ratio"].as_f64().unwrap_or(0.0),
            row["calls"].as_f64().unwrap_or(0.0),
            usage.write_units,
            usage.read_units,
            usage.billed_ms(),
            dollars,
            vs_bare,
        ));
        self.rows.push(json!({"route": name, "memory_mb": usage.memory_mb, "billed_ms": usage.billed_ms(),
            "cpu_ms": usage.cpu_ms, "write_units": usage.write_units, "read_units": usage.read_units,
            "dollars_per_million": dollars, "vs_bare_read": vs_bare}));
    }
}

/// Writes every figure to `target/bench/results.json` and the cost table to
/// `target/bench/results.md`, and says so (nothing when the directory cannot be made).
fn write_results(report: Vec<Value>, table: CostTable) {
    let dir = std::path::Path::new("target/bench");
    if std::fs::create_dir_all(dir).is_ok() {
        let results = json!({"round_trips": report, "cost": table.rows, "bare_read_dollars_per_million": table.bare_cost,
            "prices": {"lambda_request": cost::LAMBDA_REQUEST, "lambda_gb_second_arm64": cost::LAMBDA_GB_SECOND_ARM64,
                "dynamodb_write_unit": cost::DYNAMODB_WRITE_UNIT, "dynamodb_read_unit": cost::DYNAMODB_READ_UNIT,
                "http_api_request": cost::HTTP_API_REQUEST, "s3_tier1_request": cost::S3_TIER1_REQUEST,
                "s3_tier2_request": cost::S3_TIER2_REQUEST}});
        let _ = std::fs::write(
            dir.join("results.json"),
            serde_json::to_vec_pretty(&results).unwrap_or_default(),
        );
        let _ = std::fs::write(dir.join("results.md"), table.markdown);
        println!("  written to target/bench/results.json and target/bench/results.md");
    }
}

/// Runs the round-trip bench at 0, 4 and 20 ms per call.
pub async fn run() -> Result<(), String> {
    let rig = Rig::start().await?;
    // The scene: a 10,000-row source, 6 Klips over it on a dashboard, a published link.
    let scene = Scene::build(&rig.api, &rig.made.email).await?;
    let klip_path = format!("/klips/{}", scene.klip_ids[0]);
    let cases = cases(&rig.api, scene, &rig.made);
    let memory = cost::function_memory(
        &std::fs::read_to_string("template.yaml").map_err(|e| format!("template.yaml: {e}"))?,
    )?;
    let flood = bench_support::company_with_limits(&rig.state, "Flood", 2).await?;
    let bench = Bench {
        rig,
        cases,
        memory,
        flood_key: flood.api_key,
    };
    let mut results = Results {
        report: Vec::new(),
        costs: Vec::new(),
        met_all: true,
    };
    println!();
    println!(
        "round trips: every DynamoDB and S3 call of the API pays the delay (overlapping calls once); {ROUNDS} sequential requests per route; ratios to one GetItem through the same delay"
    );
    println!("  calls: DynamoDB and S3 calls per request; WRU/RRU: DynamoDB write/read request units per request");
    for delay_ms in [0u64, 4, 20] {
        bench.at_delay(delay_ms, &mut results).await?;
    }
    println!("  targets at 20 ms: reads, creates, updates and deletes p50 <= 1.3x; login and refresh <= 2.3x; at 4 ms reads p50 <= 1.5x, p99 <= 3x");
    let shared = bench.two_instances(&klip_path).await?;
    results.report.push(shared);
    results.finish();
    Ok(())
}

/// Rounds of [`Bench::two_instances`], each in a second of its own.
const SHARED_ROUNDS: usize = 12;

impl Bench {
    /// A company served by two warm instances at 20 ms per call: in each of
    /// [`SHARED_ROUNDS`] seconds, just after it starts, instance A answers a
    /// `GET /klips/{id}` (counting the new second first), then instance B answers one, timed:
    /// B's count meets a second another instance already counts. Printed as B's p50 and p99
    /// against one `GetItem` measured alongside; the first two rounds warm B up.
    async fn two_instances(&self, klip_path: &str) -> Result<Value, String> {
        let rig = &self.rig;
        rig.set_delay(20);
        let state = &rig.state;
        let other = AppState::new(
            state.config.clone(),
            state.store.clone(),
            state.clock.clone(),
        );
        let b = Api {
            base: bench_support::serve_here(&other).await?,
            ..rig.api.clone()
        };
        let get = |api: &Api| {
            let url = api.url(klip_path);
            let request = api.http.get(url).header("kf-api-key", &api.key);
            async move {
                let r = request.send().await.map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                r.bytes().await.map_err(|e| e.to_string())?;
                (status == 200)
                    .then_some(())
                    .ok_or(format!("two instances: GET {klip_path} answered {status}"))
            }
        };
        let item = platform::store::keys::company(&rig.made.company_id);
        let (mut times, mut reads) = (Vec::new(), Vec::new());
        let proxies = rig.proxies();
        let mut before = Counts::of(&proxies);
        for round in 0..SHARED_ROUNDS + 2 {
            let now = chrono::Utc::now();
            let into_second = u64::from(now.timestamp_subsec_millis());
            tokio::time::sleep(Duration::from_millis(1_000 - into_second + 20)).await;
            get(&rig.api).await?;
            if round == 2 {
                before = Counts::of(&proxies);
            }
            let t = Instant::now();
            get(&b).await?;
            if round >= 2 {
                times.push(t.elapsed());
                let t = Instant::now();
                state
                    .store
                    .get::<Value>(&item)
                    .await
                    .map_err(|e| e.to_string())?;
                reads.push(t.elapsed());
            }
        }
        // A's, B's and the GetItem's calls, per round.
        let used = Counts::of(&proxies).per(before, SHARED_ROUNDS as f64);
        let base = percentile(&mut reads, 0.5);
        let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
        let x = |d: Duration| d.as_secs_f64() / base.as_secs_f64();
        println!(
            "  two warm instances at 20 ms ({SHARED_ROUNDS} seconds; in each, instance A counts first, then B is timed): GET /klips/{{id}} on B p50 {:.2} ms {:.2}x, p99 {:.2}x a GetItem ({:.2} ms); {:.1} calls and {:.1} WRU per second for A, B and the GetItem",
            ms(p50),
            x(p50),
            x(p99),
            ms(base),
            used.calls,
            used.write_units
        );
        Ok(json!({
            "case": "GET /klips/{id} on a second warm instance, after the first counted the second",
            "delay_ms": 20,
            "p50_ms": ms(p50),
            "p50_x": x(p50),
            "p99_x": x(p99),
            "calls_per_second": used.calls,
            "write_units_per_second": used.write_units,
        }))
    }
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
