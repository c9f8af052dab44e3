//! The test harness: `TestApp` serves the same router `pulseboard serve` mounts, on a free
//! port, against the DynamoDB Local and s3s-fs that `make test` started, and gives each test
//! a company of its own.

pub mod api_doc;
pub mod events;
pub mod fixtures;
pub mod race;

use chrono::{DateTime, Duration, Utc};
use platform::bootstrap::{bootstrap, Bootstrapped, NewCompany};
use platform::config::Config;
use platform::time::Clock;
use platform::AppState;
use serde_json::Value;
use std::sync::{Arc, Mutex};

pub const PASSWORD: &str = "correct-horse-battery";

/// System time plus an offset the test can move forward (key expiry, token expiry, lockout),
/// or, once frozen, one instant that only `advance` moves (tests that must not race the
/// wall clock, such as a burst that has to fall in one rate-limit second).
#[derive(Debug, Default)]
pub struct ShiftClock {
    offset: Mutex<Duration>,
    frozen: Mutex<Option<DateTime<Utc>>>,
}

impl ShiftClock {
    /// Stops the clock at `at`.
    pub fn freeze(&self, at: DateTime<Utc>) {
        *self.frozen.lock().unwrap() = Some(at);
    }

    pub fn advance(&self, by: Duration) {
        if let Some(at) = self.frozen.lock().unwrap().as_mut() {
            *at += by;
        }
        *self.offset.lock().unwrap() += by;
    }
}

impl Clock for ShiftClock {
    fn now(&self) -> DateTime<Utc> {
        match *self.frozen.lock().unwrap() {
            Some(at) => at,
            None => Utc::now() + *self.offset.lock().unwrap(),
        }
    }
}

pub struct Options {
    pub plan: &'static str,
    pub daily_limit: Option<u64>,
    pub per_second_limit: Option<u64>,
    /// `DATASOURCE_ALLOWED_NETWORKS` for this app (tests serve data from 127.0.0.1).
    pub allowed_networks: Vec<(std::net::IpAddr, u8)>,
}

impl Default for Options {
    /// A generous per-second limit, so tests that are not about limits never meet them.
    fn default() -> Self {
        Options {
            plan: "standard",
            daily_limit: None,
            per_second_limit: Some(10_000),
            allowed_networks: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub company: Bootstrapped,
    pub clock: Arc<ShiftClock>,
}

fn config() -> Config {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run the tests with `make test`, which starts DynamoDB Local and s3s-fs"
    );
    Config::from_env().expect("test configuration")
}

/// A state on the test stack with a movable clock.
pub async fn test_state(clock: Arc<ShiftClock>) -> AppState {
    test_state_with(clock, Vec::new()).await
}

/// A state on the test stack with a movable clock and allowed private networks.
pub async fn test_state_with(
    clock: Arc<ShiftClock>,
    allowed_networks: Vec<(std::net::IpAddr, u8)>,
) -> AppState {
    let mut config = config();
    config.allowed_networks = allowed_networks;
    let store = platform::store::connect(&config.table_name, &config.bucket_name).await;
    // The table exists after the first test; this only checks it. On a loaded machine
    // DynamoDB Local can take longer than the store's 6 s operation timeout to answer, so
    // the set-up tries again rather than failing the test it serves.
    let mut tries = 0;
    while let Err(e) = store.create_table().await {
        tries += 1;
        assert!(tries < 5, "create table: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    AppState::new(config, store, clock)
}

/// Serves `router` on a free loopback port, as `pulseboard serve` does; answers its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = pulseboard_cli::listener::JsonErrorListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.test", domain::ids::new_id())
}

/// The table's stream, delivered to the report worker once per test process (as Lambda
/// does on AWS; `pulseboard serve` does the same), so runs queued by any test get generated.
async fn start_event_delivery() {
    static STARTED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    STARTED
        .get_or_init(|| async {
            // Its own thread and runtime (with its own clients): each test's runtime ends
            // with its test.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the event delivery");
                runtime.block_on(async {
                    // The worker may fetch the tests' URL data sources, served on loopback.
                    let loopback = vec![("127.0.0.1".parse().expect("an address"), 32)];
                    let state = test_state_with(Arc::new(ShiftClock::default()), loopback).await;
                    pulseboard_cli::events::deliver_stream(state).await
                });
            });
        })
        .await;
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let clock = Arc::new(ShiftClock::default());
        let state = test_state_with(clock.clone(), options.allowed_networks).await;
        let company = bootstrap(
            &state,
            NewCompany {
                company: "Test Co".into(),
                email: unique_email("admin"),
                password: PASSWORD.into(),
                plan: options.plan.into(),
                daily_limit: options.daily_limit,
                per_second_limit: options.per_second_limit,
            },
        )
        .await
        .expect("bootstrap");
        let base = serve(pulseboard_cli::all_routes(state.clone())).await;
        start_event_delivery().await;
        TestApp {
            base,
            state,
            http: reqwest::Client::new(),
            company,
            clock,
        }
    }

    /// Moves this app's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Stops this app's clock at `at` (see [`ShiftClock`]).
    pub fn freeze(&self, at: DateTime<Utc>) {
        self.clock.freeze(at);
    }

    /// `/api/v1` + path.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn key(&self) -> &str {
        &self.company.api_key
    }

    /// A GET with the company's bootstrap key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("kf-api-key", self.key())
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("kf-api-key", self.key())
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Logs the admin in; answers the `data` of the login response.
    pub async fn login(&self) -> Value {
        let response = self
            .http
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"email": self.company.email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["data"].clone()
    }

    /// A request with `key` (any method, JSON body).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("kf-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Creates a user with `roles` through the API (as the admin, or inside a client with
    /// `client`); answers the user object and an API key of that user.
    pub async fn user_with_key(&self, roles: &[&str], client: Option<&str>) -> (Value, String) {
        let suffix = client
            .map(|c| format!("?client_id={c}"))
            .unwrap_or_default();
        let response = self
            .call("POST", &format!("/users{suffix}"), self.key(), Some(serde_json::json!({
                "email": unique_email("user"), "password": PASSWORD, "roles": roles, "first_name": "Test",
            })))
            .await;
        let (status, body) = json(response).await;
        assert_eq!(status, 201, "{body}");
        let user = body["data"].clone();
        let response = self
            .call(
                "POST",
                &format!("/users/{}/api-key{suffix}", user["id"].as_str().unwrap()),
                self.key(),
                None,
            )
            .await;
        let (status, body) = json(response).await;
        assert_eq!(status, 201, "{body}");
        (user, body["data"]["key"].as_str().unwrap().to_owned())
    }

    /// Serves this app's routes (same company, same clock, same store) a second time, as a
    /// new Lambda instance would: nothing remembered; answers its base URL.
    pub async fn another_instance(&self) -> String {
        let state = AppState::new(
            self.state.config.clone(),
            self.state.store.clone(),
            self.clock.clone(),
        );
        serve(pulseboard_cli::all_routes(state)).await
    }

    /// Serves this app's routes (same company, same clock) a second time, on a store whose
    /// DynamoDB endpoint is a port where no database listens; answers its base URL.
    pub async fn serve_with_database_down(&self) -> String {
        serve(pulseboard_cli::all_routes(
            self.state_with_database_down().await,
        ))
        .await
    }

    /// This app's state (same company, same clock) on a store whose DynamoDB endpoint is a
    /// port where no database listens.
    pub async fn state_with_database_down(&self) -> AppState {
        let store = self
            .state
            .store
            .clone()
            .with_dynamodb(&dead_endpoint().await);
        AppState::new(self.state.config.clone(), store, self.clock.clone())
    }

    /// Creates an API key with `body`; answers the created key object (with its secret).
    pub async fn create_key(&self, body: Value) -> Value {
        let response = self.post("/api-keys", body).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json::<Value>().await.unwrap()["data"].clone()
    }
}

/// An SDK configuration whose endpoint is a loopback port where nothing listens, with no
/// retries (a database or file storage that is down).
pub async fn dead_endpoint() -> aws_config::SdkConfig {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    platform::store::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{dead}"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

/// Status and JSON body.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    if let Some(bad) = times_not_in_api_form(&body, "") {
        panic!("{bad} is not RFC 3339 UTC with whole seconds: {body}");
    }
    (status, body)
}

/// The first time field (`*_at`, `*_until`, `date_*`, `last_updated`) of an answer whose value
/// is not `null` nor RFC 3339 in UTC with whole seconds and `Z` (`2026-12-03T08:00:00Z`), as
/// every time in the API is written; data rows (the caller's own columns) are not looked at.
pub fn times_not_in_api_form(value: &Value, path: &str) -> Option<String> {
    let is_time_name = |k: &str| {
        k.ends_with("_at") || k.ends_with("_until") || k.starts_with("date_") || k == "last_updated"
    };
    let api_form = |t: &str| {
        let b = t.as_bytes();
        b.len() == 20
            && chrono::DateTime::parse_from_rfc3339(t).is_ok()
            && b[10] == b'T'
            && b[19] == b'Z'
    };
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            if k == "rows" {
                return None;
            }
            match v {
                Value::String(t) if is_time_name(k) && !api_form(t) => Some(here),
                _ => times_not_in_api_form(v, &here),
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| times_not_in_api_form(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Asserts the API.md §4 error shape and answers the body.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let (got, body) = json(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["meta"]["success"], false, "{body}");
    assert_eq!(body["meta"]["status"], status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[cfg(test)]
mod time_form_tests {
    use super::times_not_in_api_form;
    use serde_json::json;

    #[test]
    fn only_whole_second_utc_times_pass() {
        let ok = json!({"data": {"date_created": "2026-12-03T08:00:00Z", "expires_at": null,
                        "rows": [{"created_at": "yesterday"}], "date": "2026-12-03"}});
        assert_eq!(times_not_in_api_form(&ok, ""), None);
        for bad in [
            "2026-12-03T08:00:00.5Z",
            "2026-12-03T08:00:00+01:00",
            "2026-12-03 08:00:00 UTC",
        ] {
            let body = json!({"data": [{"last_updated": bad}]});
            assert_eq!(
                times_not_in_api_form(&body, "").as_deref(),
                Some(".data[0].last_updated"),
                "{bad}"
            );
        }
    }
}
