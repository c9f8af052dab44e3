//! DynamoDB holds at most 400 KB in one item. Whatever a request could grow past that is
//! refused with a 413 naming the field before the database is asked (it answered a 500), and
//! a Klip value too large to store is stored as a Klip error, never retried.

use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, body) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {body}");
    body["data"].clone()
}

async fn put(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.call("PUT", path, app.key(), Some(body)).await
}

/// A 413 whose message names `field`.
async fn too_large(response: reqwest::Response, field: &str) {
    let body = expect_error(response, 413, "payload_too_large").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(field), "{message}");
}

#[tokio::test]
async fn a_grouped_klip_with_30000_keys_stores_a_klip_error_not_a_500() {
    let app = TestApp::spawn().await;
    let ds = created(
        &app,
        "/datasources",
        json!({"name": "Many", "format": "csv"}),
    )
    .await;
    let mut csv = String::from("customer,sales\n");
    for i in 0..30_000 {
        csv.push_str(&format!("customer-with-a-long-name-{i:05},{i}\n"));
    }
    let id = ds["id"].as_str().unwrap();
    let response = app
        .http
        .put(app.url(&format!("/datasources/{id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let klip = json!({"name": "Per customer", "type": "bar", "datasource_id": id,
                      "query": {"value": "sales", "aggregate": "sum", "group_by": "customer"}});
    let klip = created(&app, "/klips", klip).await;
    let error = klip["value"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("too large to store"), "{}", klip["value"]);
    assert!(error.contains("30000 groups"), "{error}");
    // The stored Klip reads back with that error.
    let (status, read) = json(
        app.get(&format!("/klips/{}", klip["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read["data"]["value"]["error"], klip["value"]["error"]);
    // With a limit it fits.
    let limited = json!({"name": "Top customers", "type": "bar", "datasource_id": id,
                         "query": {"value": "sales", "aggregate": "sum", "group_by": "customer",
                                   "sort": "-value", "limit": 10}});
    let limited = created(&app, "/klips", limited).await;
    assert!(limited["value"]["error"].is_null(), "{}", limited["value"]);
    assert_eq!(limited["value"]["groups"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn annotations_past_what_a_klip_can_hold_are_a_413_naming_them() {
    let app = TestApp::spawn().await;
    let klip = created(
        &app,
        "/klips",
        json!({"name": "Notes", "type": "line", "query": {"aggregate": "count"}}),
    )
    .await;
    let path = format!("/klips/{}/annotations", klip["id"].as_str().unwrap());
    let text = "🚀".repeat(2_000);
    let mut refused = None;
    for i in 0..60 {
        let response = app
            .call(
                "POST",
                &path,
                app.key(),
                Some(json!({"date": "2026-11-20", "text": text})),
            )
            .await;
        if response.status() != 201 {
            refused = Some((i, response));
            break;
        }
    }
    let (i, response) = refused.expect("some annotation is refused");
    assert!((40..=51).contains(&i), "refused at {i}");
    too_large(response, "annotations").await;
    // What was stored before stays readable.
    let (status, list) = json(app.get(&format!("{path}?limit=100")).await).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["meta"]["total"], i);
}

#[tokio::test]
async fn a_data_source_with_400_kb_of_header_values_is_a_413_naming_them() {
    let app = TestApp::spawn().await;
    let headers: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("X-H{i}"), json!("v".repeat(20_000))))
        .collect();
    let body = json!({"name": "Big headers", "connector": "url", "format": "json",
                      "properties": {"endpoint_url": "https://example.com/feed", "headers": headers}});
    too_large(app.post("/datasources", body).await, "properties.headers").await;
    let (_, list) = json(app.get("/datasources").await).await;
    assert_eq!(list["meta"]["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn client_properties_of_500_kb_are_a_413_naming_them() {
    let app = TestApp::spawn().await;
    let client = created(&app, "/clients", json!({"name": "Big", "status": "trial"})).await;
    let path = format!("/clients/{}/properties", client["id"].as_str().unwrap());
    let properties: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("p{i}"), json!("x".repeat(10_000))))
        .collect();
    too_large(
        put(&app, &path, json!({"properties": properties})).await,
        "properties",
    )
    .await;
    let (status, stored) = json(app.get(&path).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        stored["data"]["properties"],
        json!({}),
        "nothing was stored"
    );
}
