//! API.md §1 and §4: version prefixes, aliases, trailing slashes, date versions, JSONP,
//! request ids.

use pulseboard_tests::{expect_error, json, TestApp};

#[tokio::test]
async fn the_three_prefixes_and_trailing_slashes_are_one_api() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/1.0/profile",
        "/api/1/profile",
        "/api/v1/profile",
        "/api/v1/profile/",
        "/api/1.0/profile/",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .header("kf-api-key", app.key())
            .send()
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["data"]["email"], app.company.email.as_str());
    }
}

#[tokio::test]
async fn other_versions_are_unsupported() {
    let app = TestApp::spawn().await;
    for path in ["/api/v2/profile", "/api/2.0/profile", "/api/latest/profile"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .header("kf-api-key", app.key())
            .send()
            .await
            .unwrap();
        expect_error(response, 404, "unsupported_version").await;
    }
}

#[tokio::test]
async fn claribi_unversioned_auth_paths_work() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(format!("{}/api/auth/login/", app.base))
        .json(&serde_json::json!({"email": app.company.email, "password": pulseboard_tests::PASSWORD}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["data"]["refresh"].as_str().unwrap();
    let response = app
        .http
        .post(format!("{}/api/auth/token/refresh/", app.base))
        .json(&serde_json::json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["access"].as_str().is_some());
}

#[tokio::test]
async fn date_versions_pick_the_api_or_are_refused() {
    let app = TestApp::spawn().await;
    let get = |accept: &'static str| {
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", app.key())
            .header("accept", accept)
    };
    assert_eq!(
        get("application/vnd.pulseboard.20261122+json")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("application/vnd.pulseboard.20270101+json")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(get("application/json").send().await.unwrap().status(), 200);
    expect_error(
        get("application/vnd.pulseboard.20250101+json")
            .send()
            .await
            .unwrap(),
        400,
        "unsupported_version",
    )
    .await;
    expect_error(
        get("application/vnd.pulseboard.lastweek+json")
            .send()
            .await
            .unwrap(),
        400,
        "unsupported_version",
    )
    .await;
    expect_error(
        get("application/vnd.pulseboard.20261350+json")
            .send()
            .await
            .unwrap(),
        400,
        "unsupported_version",
    )
    .await;

    let with_header = |v: &'static str| {
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", app.key())
            .header("x-api-version", v)
    };
    assert_eq!(
        with_header("2026-11-22").send().await.unwrap().status(),
        200
    );
    expect_error(
        with_header("2026-11-21").send().await.unwrap(),
        400,
        "unsupported_version",
    )
    .await;

    // A versioned Content-Type is JSON too.
    let response = app
        .http
        .post(app.url("/api-keys"))
        .header("kf-api-key", app.key())
        .header("content-type", "application/vnd.pulseboard.20261122+json")
        .body(r#"{"name":"versioned"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = app
        .http
        .post(app.url("/api-keys"))
        .header("kf-api-key", app.key())
        .header("content-type", "application/vnd.pulseboard.20200101+json")
        .body(r#"{"name":"too old"}"#)
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "unsupported_version").await;
}

#[tokio::test]
async fn every_response_has_version_and_request_id() {
    let app = TestApp::spawn().await;
    let responses = [
        app.get("/profile").await,
        app.http.get(app.url("/profile")).send().await.unwrap(),
        app.http
            .get(format!("{}/nowhere", app.base))
            .send()
            .await
            .unwrap(),
        app.http
            .get(format!("{}/api/v9/x", app.base))
            .send()
            .await
            .unwrap(),
    ];
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        assert_eq!(r.headers()["x-api-version"], "2026-11-22");
        ids.insert(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 4, "request ids are per request");
}

#[tokio::test]
async fn jsonp_wraps_gets_and_refuses_bad_callbacks() {
    let app = TestApp::spawn().await;
    let response = app.get("/profile?callback=show_profile_1").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let text = response.text().await.unwrap();
    let inner = text
        .strip_prefix("show_profile_1(")
        .and_then(|t| t.strip_suffix(");"))
        .expect(&text);
    let body: serde_json::Value = serde_json::from_str(inner).unwrap();
    assert_eq!(body["data"]["email"], app.company.email.as_str());

    // Errors are wrapped too, keeping their status.
    let response = app
        .http
        .get(app.url("/profile?callback=cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().starts_with("cb({"));

    for bad in ["alert(1)", "a.b", "", &"x".repeat(65)] {
        let response = app
            .http
            .get(app.url("/profile"))
            .query(&[("callback", bad)])
            .header("kf-api-key", app.key())
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn jsonp_paging_links_keep_the_callback() {
    let app = TestApp::spawn().await;
    for name in ["a", "b", "c"] {
        app.create_key(serde_json::json!({"name": name})).await;
    }
    let text = app
        .get("/api-keys?limit=2&callback=page")
        .await
        .text()
        .await
        .unwrap();
    let inner = text
        .strip_prefix("page(")
        .and_then(|t| t.strip_suffix(");"))
        .expect(&text);
    let body: serde_json::Value = serde_json::from_str(inner).unwrap();
    assert_eq!(
        body["meta"]["next"],
        "/api/v1/api-keys?limit=2&callback=page&offset=2"
    );
}
