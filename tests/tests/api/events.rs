//! Every saved API Gateway event under `tests/events/` goes through `lambda_http`'s own event
//! parsing into the router the auth Lambda runs.

use pulseboard_tests::{TestApp, PASSWORD};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Each event and the status it must answer.
const EVENTS: &[(&str, u16)] = &[
    ("auth-login", 200),
    ("auth-login-claribi", 200),
    ("auth-refresh", 200),
    ("auth-refresh-claribi", 200),
    ("auth-logout", 200),
    ("auth-verify", 200),
    ("profile", 200),
    ("usage", 200),
    ("api-keys-list", 200),
    ("api-keys-create", 201),
    ("api-keys-get", 200),
    ("api-keys-revoke", 200),
    ("api-keys-rotate", 201),
    ("users-api-key", 201),
    ("unknown-route", 404),
];

#[tokio::test]
async fn saved_events_run_through_the_lambda_handler() {
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(
        files,
        EVENTS.len(),
        "every saved event has an expected status here"
    );
    for (name, expected) in EVENTS {
        let key = app
            .create_key(json!({"name": format!("event {name}")}))
            .await;
        let refresh = app.login().await["refresh"].as_str().unwrap().to_owned();
        let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap()
            .replace("{{API_KEY}}", app.key())
            .replace("{{EMAIL}}", &app.company.email)
            .replace("{{PASSWORD}}", PASSWORD)
            .replace("{{REFRESH}}", &refresh)
            .replace("{{KEY_ID}}", key["id"].as_str().unwrap())
            .replace("{{USER_ID}}", &app.company.user_id);
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
        let response = pulseboard_auth_app(&app).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{name}: not JSON"));
        assert_eq!(status, *expected, "{name}: {body}");
        assert_eq!(body["meta"]["success"], status < 400, "{name}: {body}");
    }
}

/// What the auth Lambda's `main` serves.
fn pulseboard_auth_app(app: &TestApp) -> axum::Router {
    shared::http::app(pulseboard_auth::router(app.state.clone()))
}
