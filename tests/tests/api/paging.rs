//! API.md §5 on `/api-keys`: both styles, limits, `q`, `sort`, links.

use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::json;

#[tokio::test]
async fn api_key_lists_page_in_both_styles_with_links() {
    let app = TestApp::spawn().await;
    for name in ["alpha", "beta", "gamma", "delta", "alpha two"] {
        app.create_key(json!({"name": name})).await;
    }
    let (status, body) = json(app.get("/api-keys?limit=2&sort=name").await).await;
    assert_eq!(status, 200);
    let meta = &body["meta"];
    assert_eq!(
        (
            meta["count"].as_u64(),
            meta["total"].as_u64(),
            meta["limit"].as_u64(),
            meta["offset"].as_u64()
        ),
        (Some(2), Some(6), Some(2), Some(0))
    );
    let names: Vec<&str> = body["data"]["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "alpha two"]);
    assert_eq!(meta["next"], "/api/v1/api-keys?limit=2&sort=name&offset=2");
    assert!(meta["previous"].is_null());

    // Following `next` keeps the caller's parameters.
    let next = meta["next"].as_str().unwrap();
    let (_, body) = json(
        app.http
            .get(format!("{}{next}", app.base))
            .header("kf-api-key", app.key())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let names: Vec<&str> = body["data"]["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta", "bootstrap"]);
    assert_eq!(
        body["meta"]["previous"],
        "/api/v1/api-keys?limit=2&sort=name&offset=0"
    );

    // Page style, descending, q filter.
    let (_, body) = json(
        app.get("/api-keys?page=2&page_size=1&q=ALPHA&sort=-name")
            .await,
    )
    .await;
    assert_eq!(body["meta"]["page"], 2);
    assert_eq!(body["meta"]["page_size"], 1);
    assert_eq!(body["meta"]["total"], 2);
    assert_eq!(body["data"]["api_keys"][0]["name"], "alpha");
    assert_eq!(
        body["meta"]["previous"],
        "/api/v1/api-keys?page=1&page_size=1&q=ALPHA&sort=-name"
    );
    assert!(body["meta"]["next"].is_null());

    // Defaults.
    let (_, body) = json(app.get("/api-keys").await).await;
    assert_eq!(
        (
            body["meta"]["limit"].as_u64(),
            body["meta"]["offset"].as_u64(),
            body["meta"]["count"].as_u64()
        ),
        (Some(25), Some(0), Some(6))
    );
    let (_, body) = json(app.get("/api-keys?since=2000-01-01T00:00:00Z").await).await;
    assert_eq!(body["meta"]["total"], 6);
    let (_, body) = json(app.get("/api-keys?since=4102444800").await).await;
    assert_eq!(body["meta"]["total"], 0);
}

#[tokio::test]
async fn paging_validation() {
    let app = TestApp::spawn().await;
    let body = expect_error(app.get("/api-keys?limit=101").await, 400, "bad_request").await;
    assert!(body["message"].as_str().unwrap().contains("100"));
    let body = expect_error(app.get("/api-keys?page_size=200").await, 400, "bad_request").await;
    assert!(body["message"].as_str().unwrap().contains("100"));
    for bad in [
        "limit=0",
        "limit=-1",
        "offset=-5",
        "limit=abc",
        "page=0",
        "offset=1&page=2",
        "sort=colour",
        "since=soon",
        "bogus=1",
    ] {
        expect_error(
            app.get(&format!("/api-keys?{bad}")).await,
            400,
            "bad_request",
        )
        .await;
    }
}

/// Every list filter over a closed set of names refuses a name outside it with a 400 that
/// names the parameter and the names it takes, and accepts the names it lists.
#[tokio::test]
async fn a_list_filter_over_a_closed_set_refuses_an_unknown_name() {
    let app = TestApp::spawn().await;
    for (path, parameter) in [
        ("/klips?type=AAA", "type"),
        ("/reports?format=AAA", "format"),
        ("/datasources?connector=AAA", "connector"),
        ("/datasources?format=AAA", "format"),
    ] {
        let body = expect_error(app.get(path).await, 400, "bad_request").await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(parameter) && message.contains("AAA"),
            "{path}: {message}"
        );
    }
    for path in [
        "/klips?type=line",
        "/reports?format=pdf",
        "/datasources?connector=url",
    ] {
        let (status, body) = json(app.get(path).await).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
