//! The statuses any route can answer, walked over every route every function declares and
//! checked against what `docs/openapi.yaml` documents for it: each route documenting the
//! status answers it, with its error code, when
//! - the request names an API version older than the earliest (400 `unsupported_version`);
//! - the credentials are missing or wrong (401 `unauthorized`);
//! - the client account (`client_id=`) or the published link does not exist (404
//!   `not_found`);
//! - the caller's client account is disabled (403 `forbidden`);
//! - the company's day is used up (429 `rate_limited`);
//! - the database cannot be reached (503 `service_unavailable`);
//! - the body is over the request limit (413 `payload_too_large`);
//! - the body is not in a format the route reads (415 `unsupported_media_type`).
//!
//! Together with the other end-to-end tests, this is how every documented status is
//! answered at least once (`make statuses` checks that after `make test`).

use platform::http::MAX_BODY;
use pulseboard_tests::fixtures::{current_etag, get_if_none_match};
use pulseboard_tests::{expect_error, json, Options, TestApp, PASSWORD};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;

const DUMMY: &str = "0123456789abcdef0123456789abcdef";

/// One declared route with what the document says of it.
struct Op {
    method: &'static str,
    path: &'static str,
    public: bool,
    statuses: Vec<String>,
    /// The media types of its request body (empty: it takes none).
    body_types: Vec<String>,
}

impl Op {
    fn documents(&self, status: &str) -> bool {
        self.statuses.iter().any(|s| s == status)
    }

    /// The path with every parameter filled with an id that does not exist.
    fn concrete(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if segment.starts_with('{') {
                out.push_str(DUMMY);
            } else {
                out.push_str(segment);
            }
        }
        out
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn ops() -> Vec<Op> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let spec: Yaml = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut ops = Vec::new();
    for function in pulseboard_cli::FUNCTIONS {
        for route in (function.routes)() {
            let method = route.method.as_str();
            let op = &spec["paths"][route.path][method.to_lowercase().as_str()];
            let statuses = op["responses"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{method} {} has no responses", route.path))
                .keys()
                .filter_map(|k| match k {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            let body_types = op["requestBody"]["content"]
                .as_mapping()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            ops.push(Op {
                method: static_method(method),
                path: route.path,
                public: route.access.is_public(),
                statuses,
                body_types,
            });
        }
    }
    assert!(ops.len() > 100, "{}", ops.len());
    ops
}

fn static_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        other => panic!("unexpected method {other}"),
    }
}

/// A request of `op` on `base` (`/api/v1` added) with `key` (if any), without a body.
fn bare(
    http: &reqwest::Client,
    base: &str,
    op: &Op,
    path: &str,
    key: Option<&str>,
) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(op.method.as_bytes()).unwrap();
    let request = http.request(method, format!("{base}/api/v1{path}"));
    match key {
        Some(key) => request.header("kf-api-key", key),
        None => request,
    }
}

/// [`bare`], with `body` (or `{}` for a route that takes a body).
fn request(
    http: &reqwest::Client,
    base: &str,
    op: &Op,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::RequestBuilder {
    let request = bare(http, base, op, path, key);
    match body {
        Some(body) => request.json(&body),
        None if !op.body_types.is_empty() => request.json(&json!({})),
        None => request,
    }
}

/// Asserts `status` and the error JSON with `code`, naming the route when it is not so.
async fn expect(op: &Op, response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    if got != status {
        let text = response.text().await.unwrap_or_default();
        panic!("{}: {got} (not {status}): {text}", op.label());
    }
    expect_error(response, status, code).await
}

#[tokio::test]
async fn an_unsupported_api_version_is_400_on_every_route() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("400")) {
        let response = request(
            &app.http,
            &app.base,
            op,
            &op.concrete(),
            Some(app.key()),
            None,
        )
        .header("accept", "application/vnd.pulseboard.19990101+json")
        .send()
        .await
        .unwrap();
        let body = expect(op, response, 400, "unsupported_version").await;
        assert!(
            body["message"].as_str().unwrap().contains("19990101"),
            "{}: {body}",
            op.label()
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
    // The document itself is served by the edge, not by a function's route.
    let response = app
        .http
        .get(app.url("/openapi.json"))
        .header("accept", "application/vnd.pulseboard.19990101+json")
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "unsupported_version").await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_on_every_route() {
    let app = TestApp::spawn().await;
    let refresh = app.login().await["refresh"].as_str().unwrap().to_owned();
    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("401")) {
        if op.public {
            let body = match op.path {
                "/auth/login" => {
                    json!({"email": app.company.email, "password": "not the password"})
                }
                // A refresh token with its signature changed.
                "/auth/refresh" | "/auth/logout" => {
                    json!({"refresh": format!("{}x", &refresh[..refresh.len() - 1])})
                }
                "/auth/reset-password" => {
                    json!({"token": DUMMY, "password": "a new long password"})
                }
                _ => panic!("{}: documents 401, reach it here", op.label()),
            };
            let response = request(&app.http, &app.base, op, &op.concrete(), None, Some(body))
                .send()
                .await
                .unwrap();
            expect(op, response, 401, "unauthorized").await;
            checked += 1;
            continue;
        }
        for key in [None, Some("pb_not-a-key")] {
            let response = request(&app.http, &app.base, op, &op.concrete(), key, None)
                .send()
                .await
                .unwrap();
            expect(op, response, 401, "unauthorized").await;
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

#[tokio::test]
async fn a_client_account_or_link_that_does_not_exist_is_404_on_every_route() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("404")) {
        let (path, key) = match op.path {
            "/public/dashboards/{token}" => {
                let response = request(&app.http, &app.base, op, &op.concrete(), None, None)
                    .send()
                    .await
                    .unwrap();
                expect(op, response, 404, "not_found").await;
                checked += 1;
                continue;
            }
            _ if op.public => panic!("{}: documents 404, reach it here", op.label()),
            _ => (
                format!("{}?client_id={DUMMY}", op.concrete()),
                Some(app.key()),
            ),
        };
        let response = request(&app.http, &app.base, op, &path, key, None)
            .send()
            .await
            .unwrap();
        let body = expect(op, response, 404, "not_found").await;
        assert!(
            body["message"].as_str().unwrap().contains(DUMMY),
            "{}: {body}",
            op.label()
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

#[tokio::test]
async fn a_disabled_client_account_is_403_on_every_route() {
    let partner = TestApp::spawn().await;
    let (status, client) = json(
        partner
            .post("/clients", json!({"name": "Gone Co", "status": "active"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    let (user, client_key) = partner.user_with_key(&["admin"], Some(&cid)).await;
    let (status, _) = json(
        partner
            .call(
                "PUT",
                &format!("/clients/{cid}"),
                partner.key(),
                Some(json!({"status": "disabled"})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);

    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("403")) {
        let (key, body) = match op.path {
            // Its user signing in.
            "/auth/login" => (
                None,
                Some(json!({"email": user["email"], "password": PASSWORD})),
            ),
            _ if op.public => panic!("{}: documents 403, reach it here", op.label()),
            _ => (Some(client_key.as_str()), None),
        };
        let response = request(&partner.http, &partner.base, op, &op.concrete(), key, body)
            .send()
            .await
            .unwrap();
        let body = expect(op, response, 403, "forbidden").await;
        assert_eq!(body["message"], "client account disabled", "{}", op.label());
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

#[tokio::test]
async fn a_company_whose_day_is_used_up_is_429_on_every_route() {
    let app = TestApp::spawn_with(Options {
        daily_limit: Some(4),
        ..Options::default()
    })
    .await;
    // A published link, made before the day runs out (2 requests).
    let (status, dashboard) = json(app.post("/dashboards", json!({"name": "Wall"})).await).await;
    assert_eq!(status, 201, "{dashboard}");
    let id = dashboard["data"]["id"].as_str().unwrap();
    let (status, link) = json(
        app.post(&format!("/dashboards/{id}/published-links"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let token = link["data"]["token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(app.get("/profile").await.status(), 200);
    }
    expect_error(app.get("/profile").await, 429, "rate_limited").await;
    // A published link's views count on an allowance of their own (a quarter of the daily
    // limit: one view here), not on the owner's day: the first is still shown, then 429s.
    let view = app.url(&format!("/public/dashboards/{token}"));
    assert_eq!(app.http.get(&view).send().await.unwrap().status(), 200);

    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("429")) {
        let path = match op.path {
            "/public/dashboards/{token}" => format!("/public/dashboards/{token}"),
            // Failed sign-ins have a limit of their own (tests::credentials).
            "/auth/login" => continue,
            _ if op.public => panic!("{}: documents 429, reach it here", op.label()),
            _ => op.concrete(),
        };
        let response = request(&app.http, &app.base, op, &path, Some(app.key()), None)
            .send()
            .await
            .unwrap();
        assert!(
            response.headers().contains_key("retry-after"),
            "{}",
            op.label()
        );
        expect(op, response, 429, "rate_limited").await;
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

#[tokio::test]
async fn a_database_that_is_down_is_503_on_every_route_that_reads_it() {
    let app = TestApp::spawn().await;
    let refresh = app.login().await["refresh"].as_str().unwrap().to_owned();
    let base = app.serve_with_database_down().await;

    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("503")) {
        let (key, body) = match op.path {
            "/auth/login" => (
                None,
                Some(json!({"email": app.company.email, "password": PASSWORD})),
            ),
            "/auth/refresh" | "/auth/logout" => (None, Some(json!({"refresh": refresh}))),
            "/auth/reset-password" => (
                None,
                Some(json!({"token": DUMMY, "password": "a new long password"})),
            ),
            "/public/dashboards/{token}" => (None, None),
            _ if op.public => panic!("{}: documents 503, reach it here", op.label()),
            _ => (Some(app.key()), None),
        };
        let response = request(&app.http, &base, op, &op.concrete(), key, body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{}",
            op.label()
        );
        expect(op, response, 503, "service_unavailable").await;
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

#[tokio::test]
async fn a_body_over_the_request_limit_is_413_on_every_route_that_takes_one() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(MAX_BODY + 1);
    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("413")) {
        assert!(
            !op.body_types.is_empty(),
            "{}: 413 documented for a route without a body",
            op.label()
        );
        let key = (!op.public).then(|| app.key());
        let response = bare(&app.http, &app.base, op, &op.concrete(), key)
            .header("content-type", op.body_types[0].as_str())
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        expect(op, response, 413, "payload_too_large").await;
        checked += 1;
    }
    assert!(checked > 30, "{checked}");
}

#[tokio::test]
async fn a_body_in_a_format_the_route_does_not_read_is_415() {
    let app = TestApp::spawn().await;
    // A data source's rows are read in its own format: a source is needed to refuse others.
    let (status, source) = json(
        app.post("/datasources", json!({"name": "Pushed", "format": "csv"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{source}");
    let source = source["data"]["id"].as_str().unwrap().to_owned();
    let mut checked = 0;
    for op in ops().iter().filter(|op| op.documents("415")) {
        let path = match op.path {
            "/datasources/{id}/data" => format!("/datasources/{source}/data"),
            _ => op.concrete(),
        };
        assert!(
            !op.body_types.iter().any(|t| t == "application/xml"),
            "{}: pick another format for this test",
            op.label()
        );
        let key = (!op.public).then(|| app.key());
        let response = bare(&app.http, &app.base, op, &path, key)
            .header("content-type", "application/xml")
            .body("<name>x</name>")
            .send()
            .await
            .unwrap();
        expect(op, response, 415, "unsupported_media_type").await;
        checked += 1;
    }
    assert!(checked > 30, "{checked}");
}

/// `POST path body` as the admin; asserts the 201 and answers the created object's id.
async fn create(app: &TestApp, path: &str, body: Value) -> String {
    let (status, created) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// An alert (`A`, above 1) on `klip` notifying `channel`; answers its id.
async fn alert_on(app: &TestApp, klip: &str, channel: &str, slug: Option<&str>) -> String {
    let mut body = json!({"name": "A", "klip_id": klip,
        "condition": {"type": "above", "value": 1}, "channels": [channel]});
    if let Some(slug) = slug {
        body["slug"] = json!(slug);
    }
    create(app, "/alerts", body).await
}

/// A Klip, an email channel and an alert on the one notifying the other; answers the
/// alert's id.
async fn an_alert(app: &TestApp) -> String {
    let klip = create(
        app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let channel = create(
        app,
        "/channels",
        json!({"name": "C", "type": "email", "email": {"to": ["ops@example.com"]}}),
    )
    .await;
    alert_on(app, &klip, &channel, None).await
}

/// A request as the admin with a JSON body (if any) and extra headers.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("kf-api-key", app.key());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// A version no asset has: ETags are `"v<version>-<digest>"` and writes compare the version.
const STALE: &str = "\"v999-stale\"";

#[tokio::test]
async fn a_stale_if_match_is_412_on_every_route_that_reads_it_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let klip = create(
        &app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let source = create(&app, "/datasources", json!({"name": "S", "format": "csv"})).await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R", "dashboard_id": dashboard}),
    )
    .await;
    let channel = create(
        &app,
        "/channels",
        json!({"name": "C", "type": "email", "email": {"to": ["ops@example.com"]}}),
    )
    .await;
    let alert = alert_on(&app, &klip, &channel, None).await;
    let (status, placed) = json(
        send(
            &app,
            "PUT",
            &format!("/dashboards/{dashboard}/klip-instances"),
            &[],
            Some(json!({"klips": [{"klip_id": klip}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    let instance = placed["data"]["klip_instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let writes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PUT",
            format!("/dashboards/{dashboard}"),
            Some(json!({"name": "x"})),
        ),
        (
            "PUT",
            format!("/dashboards/{dashboard}/klip-instances"),
            Some(json!({"klips": []})),
        ),
        (
            "DELETE",
            format!("/dashboards/{dashboard}/klip-instances/{instance}"),
            None,
        ),
        (
            "PUT",
            format!("/dashboards/{dashboard}/layout"),
            Some(json!({"type": "grid", "state": {}})),
        ),
        (
            "PUT",
            format!("/dashboards/{dashboard}/share-rights"),
            Some(json!({"groups": []})),
        ),
        (
            "POST",
            format!("/dashboards/{dashboard}/published-links"),
            Some(json!({})),
        ),
        (
            "PUT",
            format!("/klips/{klip}/schema"),
            Some(json!({"type": "number", "query": {"aggregate": "count"}})),
        ),
        (
            "PUT",
            format!("/klips/{klip}/share-rights"),
            Some(json!({"groups": []})),
        ),
        (
            "PUT",
            format!("/datasources/{source}/share-rights"),
            Some(json!({"groups": []})),
        ),
        (
            "PUT",
            format!("/datasources/{source}/properties"),
            Some(json!({"properties": {"a": "b"}})),
        ),
        (
            "PUT",
            format!("/reports/{report}"),
            Some(json!({"name": "x"})),
        ),
        (
            "PUT",
            format!("/reports/{report}/share-rights"),
            Some(json!({"groups": []})),
        ),
        ("DELETE", format!("/reports/{report}"), None),
        (
            "PUT",
            format!("/channels/{channel}"),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("/channels/{channel}"), None),
        (
            "PUT",
            format!("/alerts/{alert}"),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("/alerts/{alert}"), None),
        ("DELETE", format!("/klips/{klip}"), None),
        ("DELETE", format!("/datasources/{source}"), None),
        ("DELETE", format!("/dashboards/{dashboard}"), None),
    ];
    for (method, path, body) in &writes {
        let response = send(&app, method, path, &[("if-match", STALE)], body.clone()).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, 412, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"], "precondition_failed", "{method} {path}");
    }
    // Nothing changed: every asset is still at its version, the instance still placed.
    for path in [
        format!("/dashboards/{dashboard}"),
        format!("/klips/{klip}"),
        format!("/datasources/{source}"),
        format!("/reports/{report}"),
        format!("/channels/{channel}"),
        format!("/alerts/{alert}"),
    ] {
        let (status, body) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_ne!(body["data"]["name"], "x", "{path}");
    }
    let (_, instances) = json(
        app.get(&format!("/dashboards/{dashboard}/klip-instances"))
            .await,
    )
    .await;
    assert_eq!(
        instances["data"]["klip_instances"][0]["id"],
        instance.as_str(),
        "{instances}"
    );
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304_without_a_body() {
    let app = TestApp::spawn().await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let klip = create(
        &app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R", "dashboard_id": dashboard}),
    )
    .await;
    let channel = create(
        &app,
        "/channels",
        json!({"name": "C", "type": "email", "email": {"to": ["ops@example.com"]}}),
    )
    .await;
    let alert = alert_on(&app, &klip, &channel, None).await;
    for path in [
        format!("/dashboards/{dashboard}"),
        format!("/dashboards/{dashboard}/layout"),
        format!("/klips/{klip}/schema"),
        format!("/reports/{report}"),
        format!("/channels/{channel}"),
        format!("/alerts/{alert}"),
    ] {
        let tag = current_etag(&app, &path).await;
        let response = get_if_none_match(&app, &path, &tag).await;
        assert_eq!(response.status(), 304, "{path}");
        assert_eq!(response.headers()["etag"], tag.as_str(), "{path}");
        assert!(response.bytes().await.unwrap().is_empty(), "{path}");
        // Another tag is not the current one: the whole answer.
        let response = get_if_none_match(&app, &path, STALE).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_slug_another_asset_has_is_409_on_create_and_update() {
    let app = TestApp::spawn().await;
    let dashboard = create(&app, "/dashboards", json!({"name": "A", "slug": "dash-a"})).await;
    let other = create(&app, "/dashboards", json!({"name": "B"})).await;
    let klip_body = |slug: Option<&str>| {
        let mut body = json!({"name": "K", "type": "number", "query": {"aggregate": "count"}});
        if let Some(slug) = slug {
            body["slug"] = json!(slug);
        }
        body
    };
    create(&app, "/klips", klip_body(Some("k-one"))).await;
    let klip = create(&app, "/klips", klip_body(None)).await;
    create(
        &app,
        "/datasources",
        json!({"name": "A", "slug": "src-a", "format": "csv"}),
    )
    .await;
    let source = create(&app, "/datasources", json!({"name": "B", "format": "csv"})).await;
    create(
        &app,
        "/reports",
        json!({"name": "R1", "slug": "rep-a", "dashboard_id": dashboard}),
    )
    .await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R2", "dashboard_id": dashboard}),
    )
    .await;

    let mail = |slug: Option<&str>| {
        let mut body = json!({"name": "M", "type": "email", "email": {"to": ["ops@example.com"]}});
        if let Some(slug) = slug {
            body["slug"] = json!(slug);
        }
        body
    };
    create(&app, "/channels", mail(Some("mail-a"))).await;
    let channel = create(&app, "/channels", mail(None)).await;
    alert_on(&app, &klip, &channel, Some("alert-a")).await;
    let alert = alert_on(&app, &klip, &channel, None).await;
    let watch = json!({"name": "W", "slug": "alert-a", "klip_id": klip,
        "condition": {"type": "below", "value": 0}, "channels": [channel]});
    let taken: Vec<(&str, String, Value)> = vec![
        ("POST", "/alerts".into(), watch),
        (
            "PUT",
            format!("/alerts/{alert}"),
            json!({"slug": "alert-a"}),
        ),
        ("POST", "/channels".into(), mail(Some("mail-a"))),
        (
            "PUT",
            format!("/channels/{channel}"),
            json!({"slug": "mail-a"}),
        ),
        (
            "POST",
            "/dashboards".into(),
            json!({"name": "C", "slug": "dash-a"}),
        ),
        (
            "PUT",
            format!("/dashboards/{other}"),
            json!({"slug": "dash-a"}),
        ),
        ("POST", "/klips".into(), klip_body(Some("k-one"))),
        ("PUT", format!("/klips/{klip}"), json!({"slug": "k-one"})),
        (
            "POST",
            "/datasources".into(),
            json!({"name": "C", "slug": "src-a", "format": "csv"}),
        ),
        (
            "PUT",
            format!("/datasources/{source}"),
            json!({"slug": "src-a"}),
        ),
        (
            "POST",
            "/reports".into(),
            json!({"name": "R3", "slug": "rep-a", "dashboard_id": dashboard}),
        ),
        (
            "PUT",
            format!("/reports/{report}"),
            json!({"slug": "rep-a"}),
        ),
    ];
    for (method, path, body) in taken {
        let response = send(&app, method, &path, &[], Some(body)).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, 409, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"], "conflict", "{method} {path}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("is already used"),
            "{method} {path}: {text}"
        );
    }
}

#[tokio::test]
async fn rotating_a_revoked_key_is_409() {
    let app = TestApp::spawn().await;
    let key = create(&app, "/api-keys", json!({"name": "k"})).await;
    let (status, _) =
        json(send(&app, "DELETE", &format!("/api-keys/{key}"), &[], None).await).await;
    assert_eq!(status, 200);
    let response = send(
        &app,
        "POST",
        &format!("/api-keys/{key}/rotate"),
        &[],
        Some(json!({})),
    )
    .await;
    let body = expect_error(response, 409, "conflict").await;
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
}

#[tokio::test]
async fn a_report_is_deleted_and_its_share_rights_read() {
    let app = TestApp::spawn().await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R", "dashboard_id": dashboard}),
    )
    .await;
    let (status, rights) = json(app.get(&format!("/reports/{report}/share-rights")).await).await;
    assert_eq!(status, 200, "{rights}");
    assert_eq!(rights["data"], json!({"groups": []}));
    let (status, body) =
        json(send(&app, "DELETE", &format!("/reports/{report}"), &[], None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["success"], true);
    expect_error(
        app.get(&format!("/reports/{report}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_klip_full_of_annotations_refuses_one_more_with_409() {
    let app = TestApp::spawn().await;
    let klip = create(
        &app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let path = format!("/klips/{klip}/annotations");
    // A Klip holds at most 500 annotations (functions/klips MAX_ANNOTATIONS).
    for i in 0..500 {
        let response = app
            .post(
                &path,
                json!({"date": "2026-01-01", "text": format!("n{i}")}),
            )
            .await;
        assert_eq!(response.status(), 201, "annotation {i}");
    }
    let body = expect_error(
        app.post(&path, json!({"date": "2026-01-01", "text": "one more"}))
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("at most 500"),
        "{body}"
    );
    let (_, list) = json(app.get(&format!("{path}?limit=1")).await).await;
    assert_eq!(list["meta"]["total"], 500, "{list}");
}

#[tokio::test]
async fn reads_and_updates_of_what_exists_answer_200() {
    let app = TestApp::spawn().await;
    let client = create(
        &app,
        "/clients",
        json!({"name": "Acme", "status": "active"}),
    )
    .await;
    let group = create(&app, "/groups", json!({"name": "Sales"})).await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R", "dashboard_id": dashboard}),
    )
    .await;
    let link = create(
        &app,
        &format!("/dashboards/{dashboard}/published-links"),
        json!({}),
    )
    .await;
    let alert = an_alert(&app).await;
    let calls: Vec<(&str, String, Option<Value>, &str, Value)> = vec![
        (
            "PUT",
            format!("/alerts/{alert}"),
            Some(json!({"name": "A2", "cooldown_minutes": 5})),
            "cooldown_minutes",
            json!(5),
        ),
        // No change of its Klip's value yet: nothing evaluated, no events.
        (
            "GET",
            format!("/alerts/{alert}/events"),
            None,
            "events",
            json!([]),
        ),
        (
            "GET",
            format!("/clients/{client}"),
            None,
            "name",
            json!("Acme"),
        ),
        (
            "GET",
            format!("/groups/{group}"),
            None,
            "name",
            json!("Sales"),
        ),
        (
            "PUT",
            format!("/groups/{group}"),
            Some(json!({"name": "Sales EMEA"})),
            "name",
            json!("Sales EMEA"),
        ),
        (
            "GET",
            format!("/dashboards/{dashboard}/published-links/{link}"),
            None,
            "id",
            json!(link),
        ),
        (
            "PUT",
            format!("/reports/{report}"),
            Some(json!({"name": "R2"})),
            "name",
            json!("R2"),
        ),
        (
            "PUT",
            format!("/reports/{report}/share-rights"),
            Some(json!({"groups": [{"group_id": group, "can_edit": false}]})),
            "groups",
            json!([{"group_id": group, "can_edit": false}]),
        ),
    ];
    for (method, path, body, field, want) in calls {
        let (status, got) = json(send(&app, method, &path, &[], body).await).await;
        assert_eq!(status, 200, "{method} {path}: {got}");
        assert_eq!(got["data"][field], want, "{method} {path}: {got}");
    }
    // The alert is listed (by its Klip too), then deleted.
    for query in ["", "?state=ok", "?klip_id="] {
        let mut path = format!("/alerts{query}");
        if query.ends_with('=') {
            let (_, shown) = json(app.get(&format!("/alerts/{alert}")).await).await;
            path.push_str(shown["data"]["klip_id"].as_str().unwrap());
        }
        let (status, listed) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{path}: {listed}");
        assert_eq!(
            listed["data"]["alerts"][0]["name"], "A2",
            "{path}: {listed}"
        );
        assert_eq!(listed["meta"]["total"], 1, "{path}: {listed}");
    }
    let (_, none) = json(app.get(&format!("/alerts?klip_id={alert}")).await).await;
    assert_eq!(none["meta"]["total"], 0, "{none}");
    let (_, none) = json(app.get("/alerts?state=firing").await).await;
    assert_eq!(none["meta"]["total"], 0, "{none}");
    let (status, body) =
        json(send(&app, "DELETE", &format!("/alerts/{alert}"), &[], None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["success"], true);
    expect_error(app.get(&format!("/alerts/{alert}")).await, 404, "not_found").await;
}
