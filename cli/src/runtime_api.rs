//! A small Lambda Runtime API (the documented `/2018-06-01/runtime/invocation/next`,
//! `/response` and `/error` protocol) for one `bootstrap` spawned as Lambda starts it: what
//! the Lambda harness test (`tests/tests/lambda.rs`) feeds the saved events through, and
//! what the cold-start bench times a first event with.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// What a function answered an invocation with.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

/// The server's side: invocations wait in `pending` until the function asks for the next;
/// its answers go to `done`.
struct Shared {
    pending: Mutex<mpsc::Receiver<(String, Value)>>,
    done: mpsc::Sender<(String, Outcome)>,
    first_ask: OnceLock<Instant>,
}

/// The request id an init failure is answered under.
pub const INIT: &str = "init";

/// One function's Runtime API, on a free loopback port; stops when dropped.
pub struct RuntimeApi {
    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub address: SocketAddr,
    shared: Arc<Shared>,
    invocations: mpsc::Sender<(String, Value)>,
    answers: mpsc::Receiver<(String, Outcome)>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Result<Self, String> {
        let (invocations, pending) = mpsc::channel(1);
        let (done, answers) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(pending),
            done,
            first_ask: OnceLock::new(),
        });
        let api = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, api).await;
        });
        Ok(RuntimeApi {
            address,
            shared,
            invocations,
            answers,
            server,
        })
    }

    /// When the function first asked for an event (the end of its init).
    pub fn first_ask(&self) -> Option<Instant> {
        self.shared.first_ask.get().copied()
    }

    /// Sends one event with request id `id` and waits up to `within` for an answer: the id
    /// it answered ([`INIT`] for an init failure) and how.
    pub async fn invoke(
        &mut self,
        id: &str,
        event: Value,
        within: Duration,
    ) -> Result<(String, Outcome), String> {
        self.invocations
            .send((id.to_owned(), event))
            .await
            .map_err(|_| "the runtime API stopped".to_owned())?;
        tokio::time::timeout(within, self.answers.recv())
            .await
            .map_err(|_| format!("no answer to {id} within {within:?}"))?
            .ok_or_else(|| "the runtime API stopped".to_owned())
    }

    /// The environment Lambda gives a function (the rest, the table, bucket, endpoints and
    /// secret, is the caller's own, as the template sets it on AWS).
    pub fn lambda_env<'a>(
        &self,
        command: &'a mut tokio::process::Command,
        name: &str,
        log_stream: &str,
    ) -> &'a mut tokio::process::Command {
        command
            .env("AWS_LAMBDA_RUNTIME_API", self.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("pulseboard-{name}"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> (HeaderMap, String) {
    let _ = shared.first_ask.set(Instant::now());
    let Some((id, event)) = shared.pending.lock().await.recv().await else {
        // The caller is gone: this function gets no more events.
        return std::future::pending().await;
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id.clone()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:harness".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            format!("Root=1-00000000-{id:0>24};Parent=0000000000000001;Sampled=0"),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    (headers, event.to_string())
}

fn as_json(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = shared
        .done
        .send((id, Outcome::Response(as_json(body))))
        .await;
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = shared.done.send((id, Outcome::Error(as_json(body)))).await;
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    let _ = shared
        .done
        .send((INIT.to_owned(), Outcome::Error(as_json(body))))
        .await;
    StatusCode::ACCEPTED
}
