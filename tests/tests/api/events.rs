//! Every saved API Gateway event under `tests/events/` goes through `lambda_http`'s own event
//! parsing into the router of the Lambda that API Gateway routes it to (`template.yaml`).

use pulseboard_tests::events::{filled, saved, EVENTS};
use pulseboard_tests::TestApp;
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn saved_events_run_through_the_lambda_handler() {
    let app = TestApp::spawn().await;
    assert_eq!(
        saved(),
        EVENTS.len(),
        "every saved event has an expected status here"
    );
    for (function, name, expected) in EVENTS {
        let text = filled(&app, name).await;
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
        let response = function_app(function, &app).oneshot(request).await.unwrap();
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

/// What each Lambda's `main` serves.
fn function_app(function: &str, app: &TestApp) -> axum::Router {
    let state = app.state.clone();
    let routes = match function {
        "auth" => pulseboard_auth::router(state),
        "users" => pulseboard_users::router(state),
        "clients" => pulseboard_clients::router(state),
        "datasources" => pulseboard_datasources::router(state),
        "klips" => pulseboard_klips::router(state),
        "dashboards" => pulseboard_dashboards::router(state),
        "reports" => pulseboard_reports::router(state),
        "notifications" => pulseboard_notifications::router(state),
        other => panic!("no function {other}"),
    };
    platform::http::app(routes)
}
