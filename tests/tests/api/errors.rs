//! API.md §4 error JSON for what axum and tower-http answer themselves, bad bodies, panics,
//! and a database that is down.

use axum::routing::get;
use pulseboard_tests::{expect_error, json, serve, TestApp};
use serde_json::json;

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let app = TestApp::spawn().await;
    let body = expect_error(app.get("/no-such-thing").await, 404, "not_found").await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("/api/v1/no-such-thing"));
    expect_error(
        app.http.get(format!("{}/", app.base)).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
}

/// Sends `request` as is over a new connection; answers the response's head and JSON body.
async fn raw(app: &TestApp, request: &[u8]) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:.200}"));
    (head.to_owned(), body)
}

/// What hyper answers itself, before any handler (a URI over 64 KiB, which no HTTP client
/// library even sends, headers over its buffer, a request that is not HTTP), is error JSON
/// too.
#[tokio::test]
async fn requests_the_http_server_refuses_itself_get_error_json() {
    let app = TestApp::spawn().await;
    let long = format!(
        "GET /api/v1/datasources?name={} HTTP/1.1\r\nhost: x\r\nkf-api-key: {}\r\n\r\n",
        "a".repeat(70_000),
        app.key()
    );
    let (head, body) = raw(&app, long.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"], "uri_too_long", "{body}");
    assert_eq!(body["status"], 414, "{body}");
    assert_eq!(body["meta"]["success"], false, "{body}");

    let big = format!(
        "GET /api/v1/profile HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let (head, body) = raw(&app, big.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    assert_eq!(body["error"], "headers_too_large", "{body}");

    let (head, body) = raw(&app, b"HELLO \x01 there\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(body["error"], "bad_request", "{body}");

    // An ordinary request on the same server is untouched.
    let response = app.get("/profile").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .put(app.url("/auth/verify"))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    expect_error(response, 405, "method_not_allowed").await;
    let response = app.http.get(app.url("/auth/login")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    expect_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn bad_bodies_get_precise_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let post = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/api-keys"))
            .header("kf-api-key", app.key())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    expect_error(
        post("{\"name\": ", "application/json").await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    expect_error(
        post("", "application/json").await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    let body = expect_error(
        post(r#"{"name": 5}"#, "application/json").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "name");
    let body = expect_error(
        post(r#"{"name": "a", "colour": "red"}"#, "application/json")
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "colour");
    let body = expect_error(
        post(r#"{"name": "a", "expires_in_days": 7}"#, "application/json")
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "expires_in_days");
    expect_error(
        post(r#"{"name": "a"}"#, "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;

    // Over the JSON limit (1 MiB) and over the request limit (6 MiB).
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = app
        .http
        .post(app.url("/api-keys"))
        .header("kf-api-key", app.key())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    let huge = "x".repeat(7 * 1024 * 1024);
    let r = app
        .http
        .post(app.url("/api-keys"))
        .header("kf-api-key", app.key())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;

    // Nothing was created: only the bootstrap key exists.
    let (_, list) = json(app.get("/api-keys").await).await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
}

#[tokio::test]
async fn unknown_query_parameters_are_400() {
    let app = TestApp::spawn().await;
    let body = expect_error(app.get("/profile?fulll=true").await, 400, "bad_request").await;
    assert!(body["message"].as_str().unwrap().contains("fulll"));
    expect_error(app.get("/profile?full=maybe").await, 400, "bad_request").await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_only_a_request_id() {
    // The edge strips the version prefix before routing, as for every function.
    let router = platform::http::app(axum::Router::new().route(
        "/boom",
        get(|| async {
            let secret: Vec<u8> = Vec::new();
            format!("{}", secret[1])
        }),
    ));
    let base = serve(router).await;
    let response = reqwest::get(format!("{base}/api/v1/boom")).await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = expect_error(response, 500, "internal_error").await;
    assert_eq!(body["request_id"], id.as_str());
    let text = body.to_string();
    assert!(
        text.contains(&id) && !text.contains("index out of bounds") && !text.contains("secret"),
        "{text}"
    );
}

#[tokio::test]
async fn a_database_that_is_down_is_503_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let base = app.serve_with_database_down().await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/api-keys"))
        .header("kf-api-key", app.key())
        .json(&json!({"name": "never stored"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    expect_error(response, 503, "service_unavailable").await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": app.company.email, "password": pulseboard_tests::PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(response, 503, "service_unavailable").await;
    let (_, list) = json(app.get("/api-keys").await).await;
    assert_eq!(list["meta"]["total"], 1);
}

#[tokio::test]
async fn a_method_a_path_does_not_declare_answers_405_without_running_anything() {
    use platform::routes::{route, Access, GET};
    let app = TestApp::spawn().await;
    let routes = vec![route(
        GET,
        "/gadgets",
        || async { "listed" },
        Access::read(),
    )];
    let base = serve(platform::http::app(platform::routes::router(
        app.state.clone(),
        routes,
    )))
    .await;
    let client = reqwest::Client::new();
    let listed = client
        .get(format!("{base}/api/v1/gadgets"))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.text().await.unwrap(), "listed");
    let response = client
        .post(format!("{base}/api/v1/gadgets"))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    expect_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn values_too_large_for_the_database_are_400s_or_401s_not_500s() {
    let app = TestApp::spawn().await;
    // A 2,100-character email (a database key holds 2 KB).
    let long = format!("{}@example.com", "a".repeat(2100));
    let response = reqwest::Client::new()
        .post(app.url("/auth/login"))
        .json(&json!({"email": long, "password": "whatever-password"}))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
    // A dashboard layout nested deeper than an item may be.
    let (status, dash) = json(app.post("/dashboards", json!({"name": "Deep"})).await).await;
    assert_eq!(status, 201, "{dash}");
    let mut state = json!({});
    for _ in 0..40 {
        state = json!({ "a": state });
    }
    let response = app
        .call(
            "PUT",
            &format!(
                "/dashboards/{}/layout",
                dash["data"]["id"].as_str().unwrap()
            ),
            app.key(),
            Some(json!({"type": "grid", "state": state})),
        )
        .await;
    let body = expect_error(response, 400, "validation_failed").await;
    assert_eq!(body["details"][0]["field"], "layout.state", "{body}");
    // An empty object key anywhere in a layout (the database refuses empty attribute names;
    // found by schemathesis as a 500), on create and on update.
    let state = json!({"a": {"b": [{"": 1}]}});
    let response = app
        .post(
            "/dashboards",
            json!({"name": "Empty key", "layout": {"type": "grid", "state": state}}),
        )
        .await;
    let body = expect_error(response, 400, "validation_failed").await;
    assert_eq!(body["details"][0]["field"], "layout.state", "{body}");
    let response = app
        .call(
            "PUT",
            &format!(
                "/dashboards/{}/layout",
                dash["data"]["id"].as_str().unwrap()
            ),
            app.key(),
            Some(json!({"type": "grid", "state": {"": true}})),
        )
        .await;
    expect_error(response, 400, "validation_failed").await;
    // A CSV header with thousands of long column names.
    let (_, ds) = json(
        app.post("/datasources", json!({"name": "Wide", "format": "csv"}))
            .await,
    )
    .await;
    let header: Vec<String> = (0..12_000)
        .map(|i| format!("{}{i}", "column".repeat(10)))
        .collect();
    let response = app
        .http
        .put(app.url(&format!(
            "/datasources/{}/data",
            ds["data"]["id"].as_str().unwrap()
        )))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(format!("{}\n", header.join(",")))
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 400, "bad_request").await;
    assert!(
        body["message"].as_str().unwrap().starts_with("line 1:"),
        "{body}"
    );
}

#[tokio::test]
async fn a_file_storage_that_is_down_is_503_naming_it_and_keeps_the_data() {
    let app = TestApp::spawn().await;
    let (_, ds) = json(
        app.post("/datasources", json!({"name": "Sales", "format": "csv"}))
            .await,
    )
    .await;
    let id = ds["data"]["id"].as_str().unwrap().to_owned();
    let store = app
        .state
        .store
        .clone()
        .with_s3(&pulseboard_tests::dead_endpoint().await);
    let down = platform::AppState::new(app.state.config.clone(), store, app.clock.clone());
    let base = serve(pulseboard_cli::all_routes(down)).await;
    let response = reqwest::Client::new()
        .put(format!("{base}/api/v1/datasources/{id}/data"))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body("day,amount\n2026-11-01,3\n")
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 503, "service_unavailable").await;
    assert!(
        body["message"].as_str().unwrap().contains("file storage"),
        "{body}"
    );
    let (_, after) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(after["data"]["row_count"], 0, "{after}");
    assert_eq!(after["data"]["version"], 1);
}
