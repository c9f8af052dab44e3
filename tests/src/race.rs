//! Races staged on purpose: a proxy in front of DynamoDB Local that forwards every call, and
//! that, once armed, holds back the first write naming a given item until another request
//! has changed that item. The held write then meets the database's real refusal (its
//! condition no longer holds), which is what happens when two requests overlap on AWS.

use crate::{serve, TestApp};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// What runs before the armed write goes on.
pub type Racer = BoxFuture<'static, ()>;

struct Armed {
    needle: String,
    racer: Racer,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    armed: Mutex<Option<Armed>>,
    fired: Mutex<u32>,
}

/// The DynamoDB operations that write.
const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

async fn forward(
    proxy: Arc<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default();
    if WRITES.contains(&operation) {
        let text = String::from_utf8_lossy(&body);
        let racer = {
            let mut armed = proxy.armed.lock().unwrap();
            match armed.as_ref() {
                Some(a) if text.contains(&a.needle) => armed.take().map(|a| a.racer),
                _ => None,
            }
        };
        if let Some(racer) = racer {
            racer.await;
            *proxy.fired.lock().unwrap() += 1;
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "content-length" && name != "connection" && name != "host" {
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
            (status, out, r.bytes().await.unwrap_or_default())
        }
        Err(_) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new()),
    }
}

/// The app's API served a second time, on a store whose DynamoDB calls pass the proxy.
pub struct Raced {
    proxy: Arc<Proxy>,
    /// The base URL of the API behind the proxy.
    pub base: String,
}

impl Raced {
    /// Serves `app`'s routes (same company, same clock) against a proxy to DynamoDB Local.
    pub async fn of(app: &TestApp) -> Raced {
        let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("make test sets it");
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            armed: Mutex::new(None),
            fired: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_base = format!("http://{}", listener.local_addr().unwrap());
        let shared = proxy.clone();
        let router = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                forward(shared.clone(), method, uri, headers, body)
            },
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        let sdk = platform::store::sdk_defaults()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(proxy_base)
            .load()
            .await;
        let store = app.state.store.clone().with_dynamodb(&sdk);
        let state = platform::AppState::new(app.state.config.clone(), store, app.clock.clone());
        let base = serve(pulseboard_cli::all_routes(state)).await;
        Raced { proxy, base }
    }

    /// The next write whose request names `needle` (an item's id) waits for `racer` first.
    pub fn arm(&self, needle: &str, racer: Racer) {
        *self.proxy.armed.lock().unwrap() = Some(Armed {
            needle: needle.to_owned(),
            racer,
        });
    }

    /// How many armed writes met their racer so far.
    pub fn fired(&self) -> u32 {
        *self.proxy.fired.lock().unwrap()
    }
}
