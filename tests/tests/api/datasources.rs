//! The datasources function: CRUD with slugs, pushed CSV and JSON data kept in S3 (with the
//! old data intact on every error), paging and raw downloads, versions, enable/disable,
//! deletes blocked by Klips, tenant isolation and visibility, URL connectors served by a
//! local HTTP server, the SSRF guard, and bulk refresh.

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use domain::records::Klip;
use platform::assets::{create, Meta};
use pulseboard_tests::fixtures::{
    self, current_etag, delete, get_if_none_match, operation, put, put_if_match,
};
use pulseboard_tests::{expect_error, json, serve, Options, TestApp};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SALES_CSV: &str = "day,region,sales,promo\n2026-11-01,EMEA,10.5,true\n2026-11-02,APAC,20,false\n2026-11-03,EMEA,,true\n";

async fn create_source(app: &TestApp, body: Value) -> Value {
    let (status, created) = json(app.post("/datasources", body).await).await;
    assert_eq!(status, 201, "{created}");
    created["data"].clone()
}

/// A request with a raw body and content type, as the bootstrap admin.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    app.http
        .request(method, app.url(path))
        .header("kf-api-key", app.key())
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn push_csv(app: &TestApp, id: &str, csv: &str) -> Value {
    let (status, body) = json(
        send(
            app,
            "PUT",
            &format!("/datasources/{id}/data"),
            "text/csv",
            csv.to_owned(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn rows(app: &TestApp, id: &str) -> Value {
    let (status, body) = json(app.get(&format!("/datasources/{id}/data?limit=100")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["rows"].clone()
}

async fn raw(app: &TestApp, id: &str) -> (String, String) {
    let response = app.get(&format!("/datasources/{id}/data?format=raw")).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// A local HTTP endpoint for URL connectors, counting the requests it sees.
struct Endpoint {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn endpoint() -> Endpoint {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new()
        .route(
            "/json",
            get(|| async {
                axum::Json(json!({"data": {"rows": [
                    {"day": "2026-11-01", "sales": 10},
                    {"day": "2026-11-02", "sales": 12.5},
                ]}, "count": 2}))
            }),
        )
        .route(
            "/csv",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/csv")],
                    "day,sales\n2026-11-01,3\n2026-11-02,4\n2026-11-03,5\n",
                )
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/garbage",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "<html>not json</html>",
                )
            }),
        )
        .route(
            "/secret",
            get(|headers: HeaderMap| async move {
                match headers.get("x-token").and_then(|v| v.to_str().ok()) {
                    Some("s3cret") => axum::Json(json!([{"n": 1}])).into_response(),
                    _ => (StatusCode::UNAUTHORIZED, "no token").into_response(),
                }
            }),
        )
        .route(
            "/query-secret",
            get(|uri: axum::http::Uri| async move {
                match uri.query() {
                    Some("token=s3cret&page=1") => axum::Json(json!([{"n": 1}])).into_response(),
                    _ => (StatusCode::UNAUTHORIZED, "no token").into_response(),
                }
            }),
        )
        .route("/to-json", get(|| async { Redirect::temporary("/json") }))
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    Endpoint {
        base: serve(router).await,
        hits,
    }
}

fn local() -> Options {
    Options {
        allowed_networks: vec![("127.0.0.1".parse().unwrap(), 32)],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_source_is_a_201_with_its_location_and_push_csv_defaults() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/datasources",
            json!({"name": "Daily Sales", "description": "by region"}),
        )
        .await;
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, created) = json(response).await;
    assert_eq!(status, 201, "{created}");
    let ds = created["data"].clone();
    let id = ds["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/1.0/datasources/{id}"));
    assert_eq!(created["meta"]["location"], location);
    assert_eq!(ds["slug"], "daily-sales");
    assert_eq!(ds["connector"], "push");
    assert_eq!(ds["format"], "csv");
    assert_eq!(ds["version"], 1);
    assert_eq!(ds["row_count"], 0);
    assert_eq!(ds["columns"], json!([]));
    assert_eq!(ds["disabled"], false);
    assert_eq!(ds["refresh_fail_count"], 0);
    assert_eq!(ds["last_error"], Value::Null);
    assert_eq!(ds["created_by"], app.company.user_id);
}

#[tokio::test]
async fn a_source_shows_every_public_field_and_no_company_id() {
    let app = TestApp::spawn().await;
    let ds = daily_sales(&app).await;
    for field in [
        "name",
        "description",
        "date_created",
        "last_updated",
        "share_rights",
        "refresh_interval",
        "properties",
        "data_size",
        "date_last_refresh",
    ] {
        assert!(ds.get(field).is_some(), "{field} missing: {ds}");
    }
    assert!(ds.get("company_id").is_none());
}

#[tokio::test]
async fn a_source_is_found_by_id_by_slug_and_through_the_alias() {
    let app = TestApp::spawn().await;
    let id = daily_sales(&app).await["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/datasources/{id}"),
        "/datasources/daily-sales".into(),
        "/data-sources/daily-sales/".into(),
    ] {
        let (status, got) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{path}: {got}");
        assert_eq!(got["data"]["id"], id);
    }
}

#[tokio::test]
async fn a_taken_slug_is_a_409() {
    let app = TestApp::spawn().await;
    daily_sales(&app).await;
    expect_error(
        app.post(
            "/datasources",
            json!({"name": "Other", "slug": "daily-sales"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_derived_slug_that_is_taken_gets_a_suffix() {
    let app = TestApp::spawn().await;
    daily_sales(&app).await;
    let twin = create_source(&app, json!({"name": "Daily Sales"})).await;
    assert_eq!(twin["slug"], "daily-sales-2");
}

#[tokio::test]
async fn an_update_changes_only_the_fields_it_sends_and_bumps_the_version() {
    let app = TestApp::spawn().await;
    let id = daily_sales(&app).await["id"].as_str().unwrap().to_owned();
    let (status, updated) = json(rename_slug_to_sales(&app, &id).await).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["version"], 2);
    assert_eq!(updated["data"]["name"], "Daily Sales");
    assert_eq!(updated["data"]["description"], "by region");
    assert_eq!(updated["data"]["refresh_interval"], 3600);
}

#[tokio::test]
async fn after_a_slug_change_the_new_slug_answers_and_the_old_one_is_a_404() {
    let app = TestApp::spawn().await;
    let id = daily_sales(&app).await["id"].as_str().unwrap().to_owned();
    assert_eq!(rename_slug_to_sales(&app, &id).await.status(), 200);
    expect_error(app.get("/datasources/daily-sales").await, 404, "not_found").await;
    assert_eq!(app.get("/datasources/sales").await.status(), 200);
}

/// Header values are write-only: shown masked.
#[tokio::test]
async fn a_url_source_shows_its_header_values_masked() {
    let app = TestApp::spawn().await;
    let url = feed(&app).await;
    assert_eq!(url["properties"]["headers"]["X-Token"], "********");
}

#[tokio::test]
async fn a_url_source_without_an_endpoint_url_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let body = expect_error(
        app.post(
            "/datasources",
            json!({"name": "No URL", "connector": "url"}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(
        body["details"][0]["field"], "properties.endpoint_url",
        "{body}"
    );
}

#[tokio::test]
async fn a_url_source_with_a_non_http_endpoint_is_a_400() {
    let app = TestApp::spawn().await;
    let body = expect_error(app.post("/datasources", json!({"name": "FTP", "connector": "url", "properties": {"endpoint_url": "ftp://example.com/x"}})).await, 400, "validation_failed").await;
    assert!(body["message"].as_str().unwrap().contains("http"), "{body}");
}

#[tokio::test]
async fn an_unknown_connector_and_an_unknown_format_are_two_details_of_one_400() {
    let app = TestApp::spawn().await;
    let body = expect_error(
        app.post(
            "/datasources",
            json!({"name": "X", "connector": "pull", "format": "xml"}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn a_json_path_not_starting_with_a_dollar_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post(
            "/datasources",
            json!({"name": "X", "properties": {"json_path": "items"}}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_create_with_an_unknown_field_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post("/datasources", json!({"name": "X", "colour": "red"}))
            .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_create_without_a_name_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post("/datasources", json!({"description": "no name"}))
            .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn the_list_has_every_source_of_the_company() {
    let app = TestApp::spawn().await;
    three_sources(&app).await;
    let (_, list) = json(app.get("/datasources").await).await;
    assert_eq!(list["meta"]["total"], 3);
}

#[tokio::test]
async fn the_list_filters_by_connector() {
    let app = TestApp::spawn().await;
    let url = three_sources(&app).await;
    let (_, list) = json(app.get("/datasources?connector=url").await).await;
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["data"]["datasources"][0]["id"], url["id"]);
}

#[tokio::test]
async fn the_list_filters_by_format_and_disabled_and_pages_with_a_next_link() {
    let app = TestApp::spawn().await;
    three_sources(&app).await;
    let (_, list) = json(
        app.get("/datasources?format=csv&disabled=false&limit=1")
            .await,
    )
    .await;
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["meta"]["count"], 1);
    assert!(
        list["meta"]["next"].as_str().unwrap().contains("offset=1"),
        "{list}"
    );
}

#[tokio::test]
async fn the_list_searches_with_q() {
    let app = TestApp::spawn().await;
    three_sources(&app).await;
    let (_, list) = json(app.get("/datasources?q=feed").await).await;
    assert_eq!(list["meta"]["total"], 1);
}

#[tokio::test]
async fn an_unknown_connector_filter_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.get("/datasources?connector=ftp").await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_list_parameter_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(app.get("/datasources?colour=red").await, 400, "bad_request").await;
}

#[tokio::test]
async fn properties_are_read_in_klipfolios_shape() {
    let app = TestApp::spawn().await;
    let url_id = feed(&app).await["id"].as_str().unwrap().to_owned();
    let (_, props) = json(app.get(&format!("/datasources/{url_id}/properties")).await).await;
    assert_eq!(props["data"]["properties"]["json_path"], "$.items");
}

/// A properties PUT merges into the stored ones; header values stay masked.
#[tokio::test]
async fn a_properties_put_merges_into_the_stored_ones() {
    let app = TestApp::spawn().await;
    let url_id = feed(&app).await["id"].as_str().unwrap().to_owned();
    let (status, props) = json(
        put(
            &app,
            &format!("/datasources/{url_id}/properties"),
            json!({"properties": {"json_path": "$.data.rows"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{props}");
    assert_eq!(
        props["data"]["properties"],
        json!({"endpoint_url": "https://example.com/feed", "json_path": "$.data.rows", "headers": {"X-Token": "********"}})
    );
}

#[tokio::test]
async fn an_unknown_property_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let url_id = feed(&app).await["id"].as_str().unwrap().to_owned();
    let body = expect_error(
        put(
            &app,
            &format!("/datasources/{url_id}/properties"),
            json!({"properties": {"colour": "red"}}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "properties.colour");
}

#[tokio::test]
async fn removing_the_endpoint_url_of_a_url_source_is_a_400() {
    let app = TestApp::spawn().await;
    let url_id = feed(&app).await["id"].as_str().unwrap().to_owned();
    expect_error(
        put(
            &app,
            &format!("/datasources/{url_id}/properties"),
            json!({"properties": {"endpoint_url": null}}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_deleted_source_is_a_404() {
    let app = TestApp::spawn().await;
    let twin = create_source(&app, json!({"name": "Daily Sales"})).await;
    assert_eq!(
        delete(
            &app,
            &format!("/datasources/{}", twin["id"].as_str().unwrap())
        )
        .await
        .status(),
        200
    );
    expect_error(
        app.get(&format!("/datasources/{}", twin["id"].as_str().unwrap()))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn an_overlong_id_is_a_404() {
    let app = TestApp::spawn().await;
    expect_error(
        app.get(&format!("/datasources/{}", "x".repeat(2000))).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_csv_push_infers_column_types() {
    let app = TestApp::spawn().await;
    let ds = create_source(&app, json!({"name": "Sales"})).await;
    let id = ds["id"].as_str().unwrap();
    let pushed = push_csv(&app, id, SALES_CSV).await;
    assert_eq!(pushed["row_count"], 3);
    assert_eq!(pushed["data_size"], SALES_CSV.len());
    assert_eq!(pushed["version"], 2);
    assert!(pushed["date_last_refresh"].is_string());
    assert_eq!(
        pushed["columns"],
        json!([{"name": "day", "type": "datetime"}, {"name": "region", "type": "text"}, {"name": "sales", "type": "number"}, {"name": "promo", "type": "boolean"}])
    );
    let got = rows(&app, id).await;
    assert_eq!(
        got[0],
        json!({"day": "2026-11-01", "region": "EMEA", "sales": 10.5, "promo": true})
    );
    assert_eq!(got[2]["sales"], Value::Null);
}

#[tokio::test]
async fn a_csv_append_adds_rows_to_one_file_with_one_header() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    let (status, appended) = json(
        send(
            &app,
            "POST",
            &format!("/datasources/{id}/data"),
            "text/csv; charset=utf-8",
            "day,region,sales,promo\n2026-11-04,AMER,7,false\n",
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{appended}");
    assert_eq!(appended["data"]["row_count"], 4);
    let (content_type, file) = raw(&app, &id).await;
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(file.matches("day,region").count(), 1, "{file}");
    assert!(file.ends_with("2026-11-04,AMER,7,false\n"), "{file}");
    assert_eq!(appended["data"]["data_size"], file.len());
}

#[tokio::test]
async fn a_csv_append_with_other_columns_is_a_400_naming_them_and_adds_nothing() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    let body = expect_error(
        send(
            &app,
            "POST",
            &format!("/datasources/{id}/data"),
            "text/csv",
            "day,sales\n2026-11-05,1\n",
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("day, region, sales, promo"),
        "{body}"
    );
    assert_eq!(rows(&app, &id).await.as_array().unwrap().len(), 3);
}

/// A JSON source replaced with two rows of `at` (datetime), `n` (number) and `ok`
/// (boolean); answers its id.
async fn json_events(app: &TestApp) -> String {
    let ds = create_source(app, json!({"name": "Events", "format": "json"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    let (status, pushed) = json(send(app, "PUT", &format!("/datasources/{id}/data"), "application/json", r#"[{"at":"2026-11-01T10:00:00Z","n":1,"ok":true},{"at":"2026-11-02T10:00:00Z","n":2.5,"ok":false}]"#).await).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["data"]["row_count"], 2);
    let types: Vec<(&str, &str)> = pushed["data"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [("at", "datetime"), ("n", "number"), ("ok", "boolean")]
    );
    id
}

#[tokio::test]
async fn a_json_append_adds_rows_to_the_array() {
    let app = TestApp::spawn().await;
    let id = json_events(&app).await;
    let (status, appended) = json(
        send(
            &app,
            "POST",
            &format!("/datasources/{id}/data"),
            "application/json",
            r#"[{"n":3,"ok":null,"at":"2026-11-03T10:00:00Z"}]"#,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{appended}");
    assert_eq!(appended["data"]["row_count"], 3);
    let (content_type, file) = raw(&app, &id).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let file: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(file.as_array().unwrap().len(), 3);
    assert_eq!(rows(&app, &id).await[2]["n"], 3);
}

#[tokio::test]
async fn a_json_append_missing_a_column_is_a_400_and_adds_nothing() {
    let app = TestApp::spawn().await;
    let id = json_events(&app).await;
    let body = expect_error(
        send(
            &app,
            "POST",
            &format!("/datasources/{id}/data"),
            "application/json",
            r#"[{"n":4,"ok":true}]"#,
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("columns"),
        "{body}"
    );
    assert_eq!(rows(&app, &id).await.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_ragged_csv_is_a_400_naming_the_line() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    let body = expect_error(
        send(&app, "PUT", &data_path(&id), "text/csv", RAGGED_CSV).await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("line 3"),
        "{body}"
    );
}

#[tokio::test]
async fn json_pushed_to_a_csv_source_is_a_415_naming_text_csv() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    let body = expect_error(
        send(
            &app,
            "PUT",
            &data_path(&id),
            "application/json",
            "[{\"a\":1}]",
        )
        .await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("text/csv"),
        "{body}"
    );
}

#[tokio::test]
async fn a_text_plain_push_is_a_415() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    expect_error(
        send(&app, "PUT", &data_path(&id), "text/plain", "a\n1\n").await,
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn a_push_over_5_mib_is_a_413() {
    let app = TestApp::spawn().await;
    let id = sales_with_data(&app).await;
    let body = expect_error(
        send(&app, "PUT", &data_path(&id), "text/csv", over_5_mib()).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("5 MiB"),
        "{body}"
    );
}

#[tokio::test]
async fn an_append_that_takes_a_file_past_5_mib_is_a_413() {
    let app = TestApp::spawn().await;
    let big = over_5_mib();
    let half = big[..3 * 1024 * 1024]
        .rsplit_once('\n')
        .unwrap()
        .0
        .to_owned()
        + "\n";
    let half_source = create_source(&app, json!({"name": "Big"})).await;
    let half_id = half_source["id"].as_str().unwrap();
    push_csv(&app, half_id, &half).await;
    expect_error(
        send(&app, "POST", &data_path(half_id), "text/csv", half.clone()).await,
        413,
        "payload_too_large",
    )
    .await;
}

/// A refused CSV push leaves the version, the rows and the raw file as they were.
#[tokio::test]
async fn refused_csv_pushes_leave_the_old_data() {
    let app = TestApp::spawn().await;
    let ds = create_source(&app, json!({"name": "Sales"})).await;
    let id = ds["id"].as_str().unwrap();
    let before = push_csv(&app, id, SALES_CSV).await;
    let rows_before = rows(&app, id).await;
    let raw_before = raw(&app, id).await;

    let path = data_path(id);
    for (content_type, body, status, code) in [
        ("text/csv", RAGGED_CSV.to_owned(), 400, "bad_request"),
        (
            "application/json",
            "[{\"a\":1}]".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            "a\n1\n".to_owned(),
            415,
            "unsupported_media_type",
        ),
        ("text/csv", over_5_mib(), 413, "payload_too_large"),
    ] {
        expect_error(
            send(&app, "PUT", &path, content_type, body).await,
            status,
            code,
        )
        .await;
    }

    let after = json(app.get(&format!("/datasources/{id}")).await).await.1["data"].clone();
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["row_count"], 3);
    assert_eq!(rows(&app, id).await, rows_before);
    assert_eq!(raw(&app, id).await, raw_before);
}

#[tokio::test]
async fn malformed_json_is_a_400_invalid_json_naming_the_line() {
    let app = TestApp::spawn().await;
    let jid = events_with_data(&app).await;
    let body = expect_error(
        send(
            &app,
            "PUT",
            &data_path(&jid),
            "application/json",
            r#"[{"a":1},"#,
        )
        .await,
        400,
        "invalid_json",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
}

#[tokio::test]
async fn json_rows_with_different_fields_are_a_400_naming_the_row() {
    let app = TestApp::spawn().await;
    let jid = events_with_data(&app).await;
    let body = expect_error(
        send(
            &app,
            "PUT",
            &data_path(&jid),
            "application/json",
            r#"[{"a":1},{"b":2}]"#,
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("row 2"),
        "{body}"
    );
}

#[tokio::test]
async fn a_nested_json_value_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let jid = events_with_data(&app).await;
    let body = expect_error(
        send(
            &app,
            "PUT",
            &data_path(&jid),
            "application/json",
            r#"[{"a":{"deep":1}}]"#,
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("field 'a'"),
        "{body}"
    );
}

#[tokio::test]
async fn csv_pushed_to_a_json_source_is_a_415() {
    let app = TestApp::spawn().await;
    let jid = events_with_data(&app).await;
    expect_error(
        send(&app, "PUT", &data_path(&jid), "text/csv", "a\n1\n").await,
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn refused_json_pushes_leave_the_old_rows() {
    let app = TestApp::spawn().await;
    let jid = events_with_data(&app).await;
    let path = data_path(&jid);
    for (content_type, body, status, code) in [
        ("application/json", r#"[{"a":1},"#, 400, "invalid_json"),
        (
            "application/json",
            r#"[{"a":1},{"b":2}]"#,
            400,
            "bad_request",
        ),
        (
            "application/json",
            r#"[{"a":{"deep":1}}]"#,
            400,
            "bad_request",
        ),
        ("text/csv", "a\n1\n", 415, "unsupported_media_type"),
    ] {
        expect_error(
            send(&app, "PUT", &path, content_type, body).await,
            status,
            code,
        )
        .await;
    }
    assert_eq!(rows(&app, &jid).await, json!([{"a": 1}]));
}

#[tokio::test]
async fn a_source_without_data_has_no_rows_and_no_file() {
    let app = TestApp::spawn().await;
    create_source(&app, json!({"name": "Counts", "slug": "counts"})).await;
    expect_error(
        app.get("/datasources/counts/data?format=raw").await,
        404,
        "not_found",
    )
    .await;
    let (_, empty) = json(app.get("/datasources/counts/data").await).await;
    assert_eq!(empty["data"]["rows"], json!([]));
}

/// "Counts" (slug `counts`): 30 CSV rows `i,label` (1, "row 1" ... 30, "row 30"); answers
/// its id and the CSV.
async fn counts(app: &TestApp) -> (String, String) {
    let ds = create_source(app, json!({"name": "Counts", "slug": "counts"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    let mut csv = String::from("i,label\n");
    for i in 1..=30 {
        csv.push_str(&format!("{i},row {i}\n"));
    }
    push_csv(app, &id, &csv).await;
    (id, csv)
}

#[tokio::test]
async fn data_rows_page_in_both_styles_with_links() {
    let app = TestApp::spawn().await;
    counts(&app).await;
    let (status, page) = json(app.get("/datasources/counts/data?limit=10&offset=10").await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["meta"]["count"], 10);
    assert_eq!(page["meta"]["total"], 30);
    assert_eq!(page["data"]["rows"][0], json!({"i": 11, "label": "row 11"}));
    assert_eq!(
        page["meta"]["next"],
        "/api/v1/datasources/counts/data?limit=10&offset=20"
    );
    assert_eq!(
        page["meta"]["previous"],
        "/api/v1/datasources/counts/data?limit=10&offset=0"
    );
    let (_, page) = json(
        app.get("/datasources/counts/data?page=3&page_size=12")
            .await,
    )
    .await;
    assert_eq!(page["meta"]["count"], 6);
    assert_eq!(page["meta"]["page"], 3);
    assert_eq!(page["meta"]["next"], Value::Null);
    assert_eq!(page["data"]["rows"][0]["i"], 25);
    let (_, page) = json(app.get("/datasources/counts/data").await).await;
    assert_eq!(page["meta"]["count"], 25);
}

#[tokio::test]
async fn format_raw_downloads_the_file_as_pushed() {
    let app = TestApp::spawn().await;
    let (_, csv) = counts(&app).await;
    let response = app.get("/datasources/counts/data?format=raw").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(response.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("counts.csv"));
    assert_eq!(response.text().await.unwrap(), csv);
}

#[tokio::test]
async fn data_parameters_that_do_not_apply_are_400() {
    let app = TestApp::spawn().await;
    counts(&app).await;
    for query in [
        "format=raw&limit=5",
        "format=xml",
        "sort=name",
        "limit=101",
        "colour=red",
    ] {
        expect_error(
            app.get(&format!("/datasources/counts/data?{query}")).await,
            400,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn changing_the_format_rewrites_the_file_and_keeps_the_rows() {
    let app = TestApp::spawn().await;
    let (id, _) = counts(&app).await;
    let (status, changed) = json(
        app.call(
            "PUT",
            "/datasources/counts",
            app.key(),
            Some(json!({"format": "json"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let (content_type, file) = raw(&app, &id).await;
    assert!(content_type.starts_with("application/json"));
    let file: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(file[29], json!({"i": 30, "label": "row 30"}));
    assert_eq!(
        changed["data"]["data_size"],
        serde_json::to_vec(&file).unwrap().len()
    );
}

#[tokio::test]
async fn a_source_etag_carries_version_1_and_if_none_match_answers_304() {
    let app = TestApp::spawn().await;
    let path = source_path(&create_source(&app, json!({"name": "Sales"})).await);
    let etag = current_etag(&app, &path).await;
    assert!(etag.starts_with("\"v1-"), "{etag}");
    let again = get_if_none_match(&app, &path, &etag).await;
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn a_put_with_the_current_etag_answers_the_next_versions_etag() {
    let app = TestApp::spawn().await;
    let path = source_path(&create_source(&app, json!({"name": "Sales"})).await);
    let etag = current_etag(&app, &path).await;
    let response = put_if_match(&app, &path, &etag, json!({"name": "Renamed"})).await;
    assert_eq!(response.status(), 200);
    let new_etag = fixtures::etag(&response);
    assert!(new_etag.starts_with("\"v2-"), "{new_etag}");
}

#[tokio::test]
async fn a_put_with_a_stale_etag_is_a_412_naming_the_current_version() {
    let app = TestApp::spawn().await;
    let (path, stale) = renamed_source(&app).await;
    let body = expect_error(
        put_if_match(&app, &path, &stale, json!({"name": "Stale"})).await,
        412,
        "precondition_failed",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("version 2"),
        "{body}"
    );
}

#[tokio::test]
async fn a_push_with_a_stale_etag_is_a_412() {
    let app = TestApp::spawn().await;
    let (path, stale) = renamed_source(&app).await;
    expect_error(
        stale_push(&app, &path, &stale).await,
        412,
        "precondition_failed",
    )
    .await;
}

/// Neither a stale PUT nor a stale push changes the source.
#[tokio::test]
async fn writes_with_a_stale_etag_change_nothing() {
    let app = TestApp::spawn().await;
    let (path, stale) = renamed_source(&app).await;
    expect_error(
        put_if_match(&app, &path, &stale, json!({"name": "Stale"})).await,
        412,
        "precondition_failed",
    )
    .await;
    expect_error(
        stale_push(&app, &path, &stale).await,
        412,
        "precondition_failed",
    )
    .await;
    let (_, now) = json(app.get(&path).await).await;
    assert_eq!(now["data"]["name"], "Renamed");
    assert_eq!(now["data"]["version"], 2);
    assert_eq!(now["data"]["row_count"], 0);
}

#[tokio::test]
async fn an_old_etag_no_longer_answers_304() {
    let app = TestApp::spawn().await;
    let (path, stale) = renamed_source(&app).await;
    let again = get_if_none_match(&app, &path, &stale).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_disabled_source_shows_as_disabled() {
    let app = TestApp::spawn().await;
    let id = create_source(&app, json!({"name": "Sales"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, disabled) =
        json(operation(&app, &format!("/datasources/{id}/@/disable")).await).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["data"]["disabled"], true);
}

#[tokio::test]
async fn a_disabled_source_refuses_a_push_with_a_409_saying_why() {
    let app = TestApp::spawn().await;
    let path = disabled_source(&app).await;
    let body = expect_error(
        send(&app, "PUT", &format!("{path}/data"), "text/csv", SALES_CSV).await,
        409,
        "conflict",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
}

#[tokio::test]
async fn a_disabled_source_refuses_an_append_with_a_409() {
    let app = TestApp::spawn().await;
    let path = disabled_source(&app).await;
    expect_error(
        send(&app, "POST", &format!("{path}/data"), "text/csv", SALES_CSV).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_disabled_source_refuses_a_refresh_with_a_409() {
    let app = TestApp::spawn().await;
    let path = disabled_source(&app).await;
    expect_error(
        operation(&app, &format!("{path}/refresh")).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn the_list_filters_disabled_sources() {
    let app = TestApp::spawn().await;
    disabled_source(&app).await;
    let (_, list) = json(app.get("/datasources?disabled=true").await).await;
    assert_eq!(list["meta"]["total"], 1);
}

#[tokio::test]
async fn an_enabled_source_takes_pushes_and_refreshes_again() {
    let app = TestApp::spawn().await;
    let path = disabled_source(&app).await;
    let (status, enabled) = json(operation(&app, &format!("{path}/enable")).await).await;
    assert_eq!(status, 200);
    assert_eq!(enabled["data"]["disabled"], false);
    let id = path.trim_start_matches("/datasources/");
    push_csv(&app, id, SALES_CSV).await;
    let (status, refreshed) = json(operation(&app, &format!("{path}/@/refresh")).await).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["data"]["refresh"], json!({"status": "succeeded"}));
}

fn klip_using(app: &TestApp, datasource_id: &str, name: &str) -> Klip {
    Klip {
        meta: Meta::new(
            &app.company.company_id,
            &app.company.user_id,
            name.into(),
            None,
            None,
        ),
        kind: domain::KlipType::Number,
        datasource_id: Some(datasource_id.into()),
        query: Default::default(),
        display: Default::default(),
        value: None,
        annotations: vec![],
    }
}

#[tokio::test]
async fn a_source_used_by_klips_is_only_deleted_with_force_and_pushes_recompute_them() {
    let app = TestApp::spawn().await;
    let ds = create_source(&app, json!({"name": "Sales"})).await;
    let id = ds["id"].as_str().unwrap();
    let klip = create(&app.state, klip_using(&app, id, "Revenue tile"))
        .await
        .unwrap();
    push_csv(&app, id, SALES_CSV).await;
    let key = platform::store::keys::asset(
        platform::assets::Kind::Klip,
        &app.company.company_id,
        &klip.meta.id,
    );
    let stored: Klip = app.state.store.get(key).await.unwrap().unwrap();
    assert!(
        stored.value.is_some(),
        "a push recomputes the Klips that use the source"
    );

    let body = expect_error(
        app.call("DELETE", &format!("/datasources/{id}"), app.key(), None)
            .await,
        409,
        "conflict",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("Revenue tile") && message.contains(&klip.meta.id),
        "{message}"
    );
    assert_eq!(app.get(&format!("/datasources/{id}")).await.status(), 200);
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/datasources/{id}?force=true"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    expect_error(
        app.get(&format!("/datasources/{id}")).await,
        404,
        "not_found",
    )
    .await;
    // Its data went with it.
    let listed = app
        .state
        .store
        .files()
        .list(&format!("{}/datasources/{id}/", app.company.company_id))
        .await
        .unwrap();
    assert_eq!(listed.len(), 0);
}

#[tokio::test]
async fn other_companies_get_404_on_every_data_source_route() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let (id, _) = shared_and_hidden(&app).await;
    for target in [id.as_str(), "shared"] {
        for (method, path) in [
            ("GET", format!("/datasources/{target}")),
            ("PUT", format!("/datasources/{target}")),
            ("DELETE", format!("/datasources/{target}")),
            ("GET", format!("/datasources/{target}/data")),
            ("GET", format!("/datasources/{target}/properties")),
            ("POST", format!("/datasources/{target}/refresh")),
            ("POST", format!("/datasources/{target}/disable")),
            ("GET", format!("/datasources/{target}/share-rights")),
        ] {
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let response = other.call(method, &path, other.key(), body).await;
            expect_error(response, 404, "not_found").await;
        }
    }
    let (_, list) = json(other.call("GET", "/datasources", other.key(), None).await).await;
    assert_eq!(list["meta"]["total"], 0);
    assert_eq!(app.get("/datasources/shared").await.status(), 200);
}

/// "Shared" (slug `shared`, with the sales rows) and "Hidden" (slug `hidden`); answers
/// their ids.
async fn shared_and_hidden(app: &TestApp) -> (String, String) {
    let ds = create_source(app, json!({"name": "Shared", "slug": "shared"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    let hidden = create_source(app, json!({"name": "Hidden", "slug": "hidden"})).await;
    push_csv(app, &id, SALES_CSV).await;
    (id, hidden["id"].as_str().unwrap().to_owned())
}

/// A group "Sales team"; answers its id.
async fn sales_team(app: &TestApp) -> String {
    let (_, group) = json(app.post("/groups", json!({"name": "Sales team"})).await).await;
    group["data"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn share_rights_are_replaced_and_read_back_and_name_only_existing_groups() {
    let app = TestApp::spawn().await;
    let (id, _) = shared_and_hidden(&app).await;
    let gid = sales_team(&app).await;
    let body = expect_error(app.call("PUT", &format!("/datasources/{id}/share-rights"), app.key(), Some(json!({"groups": [{"group_id": "0123456789abcdef0123456789abcdef", "can_edit": false}]}))).await, 400, "validation_failed").await;
    assert_eq!(body["details"][0]["field"], "groups[0].group_id");
    let (status, shared) = json(
        app.call(
            "PUT",
            &format!("/datasources/{id}/share-rights"),
            app.key(),
            Some(json!({"groups": [{"group_id": gid, "can_edit": false}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(
        shared["data"],
        json!({"groups": [{"group_id": gid, "can_edit": false}]})
    );
    let (_, rights) = json(app.get(&format!("/datasources/{id}/share-rights")).await).await;
    assert_eq!(rights["data"], shared["data"]);
}

#[tokio::test]
async fn a_viewer_sees_only_the_sources_shared_with_their_group_and_cannot_download_or_edit() {
    let app = TestApp::spawn().await;
    let (id, hidden) = shared_and_hidden(&app).await;
    let gid = sales_team(&app).await;
    let (status, _) = json(
        app.call(
            "PUT",
            &format!("/datasources/{id}/share-rights"),
            app.key(),
            Some(json!({"groups": [{"group_id": gid, "can_edit": false}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (viewer, viewer_key) = app.user_with_key(&["viewer"], None).await;
    let uid = viewer["id"].as_str().unwrap();
    assert_eq!(
        app.call(
            "PUT",
            &format!("/groups/{gid}/members/{uid}"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );

    let (_, list) = json(app.call("GET", "/datasources", &viewer_key, None).await).await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
    assert_eq!(list["data"]["datasources"][0]["id"], id);
    assert_eq!(
        app.call("GET", "/datasources/shared", &viewer_key, None)
            .await
            .status(),
        200
    );
    for target in ["hidden", hidden.as_str()] {
        expect_error(
            app.call("GET", &format!("/datasources/{target}"), &viewer_key, None)
                .await,
            404,
            "not_found",
        )
        .await;
    }
    let body = expect_error(
        app.call("GET", &format!("/datasources/{id}/data"), &viewer_key, None)
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission datasource.download");
    let body = expect_error(
        app.call(
            "PUT",
            &format!("/datasources/{id}"),
            &viewer_key,
            Some(json!({"name": "x"})),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission datasource.edit");
}

#[tokio::test]
async fn an_editor_sees_every_source_of_the_company() {
    let app = TestApp::spawn().await;
    shared_and_hidden(&app).await;
    let (_, editor_key) = app.user_with_key(&["editor"], None).await;
    let (_, list) = json(app.call("GET", "/datasources", &editor_key, None).await).await;
    assert_eq!(list["meta"]["total"], 2);
}

/// The feed redirects to `/json`; the refresh follows it and keeps the rows at the json_path.
#[tokio::test]
async fn a_url_refresh_follows_a_redirect_and_takes_the_rows_at_the_json_path() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let id = redirecting_feed(&app, &server).await;
    let (status, body) = json(refresh(&app, &id).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["refresh"],
        json!({"status": "succeeded"}),
        "{body}"
    );
    assert_eq!(body["data"]["row_count"], 2);
    assert_eq!(body["data"]["refresh_fail_count"], 0);
    assert!(body["data"]["date_last_refresh"].is_string());
    assert_eq!(rows(&app, &id).await, feed_rows());
}

#[tokio::test]
async fn the_raw_file_of_a_json_url_source_is_the_picked_array() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let id = redirecting_feed(&app, &server).await;
    let (status, body) = json(refresh(&app, &id).await).await;
    assert_eq!(status, 200, "{body}");
    let good = rows(&app, &id).await;
    assert_eq!(good, feed_rows());
    let (_, file) = raw(&app, &id).await;
    assert_eq!(
        serde_json::from_str::<Value>(&file).unwrap(),
        good,
        "the raw file is the picked array"
    );
}

/// An HTTP error, then an answer that is not JSON: each failed refresh is counted and
/// stored as the last error, and the last good rows stay.
#[tokio::test]
async fn failed_refreshes_are_counted_and_keep_the_last_good_data() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let id = redirecting_feed(&app, &server).await;
    let (status, body) = json(refresh(&app, &id).await).await;
    assert_eq!(status, 200, "{body}");
    let good = rows(&app, &id).await;
    assert_eq!(good, feed_rows());

    for (path, fails, expected) in [("/fail", 1, "500"), ("/garbage", 2, "not valid JSON")] {
        let (status, _) = json(
            put(
                &app,
                &format!("/datasources/{id}/properties"),
                json!({"properties": {"endpoint_url": format!("{}{path}", server.base)}}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
        let (status, body) = json(refresh(&app, &id).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["refresh"]["status"], "failed", "{body}");
        assert_eq!(body["data"]["refresh_fail_count"], fails);
        let error = body["data"]["last_error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
        assert_eq!(body["data"]["refresh"]["error"], error);
        assert_eq!(body["data"]["row_count"], 2);
        assert_eq!(rows(&app, &id).await, good);
    }
}

#[tokio::test]
async fn a_json_path_that_misses_fails_the_refresh_naming_the_missing_key() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let id = missing_json_path_feed(&app, &server).await;
    let (_, body) = json(refresh(&app, &id).await).await;
    assert!(
        body["data"]["last_error"]
            .as_str()
            .unwrap()
            .contains("$.data has no 'cols'"),
        "{body}"
    );
}

#[tokio::test]
async fn a_good_refresh_after_a_failure_resets_the_fail_count_and_error() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let id = missing_json_path_feed(&app, &server).await;
    let (_, failed) = json(refresh(&app, &id).await).await;
    assert_eq!(failed["data"]["refresh"]["status"], "failed", "{failed}");
    put(
        &app,
        &format!("/datasources/{id}/properties"),
        json!({"properties": {"json_path": "$.data.rows"}}),
    )
    .await;
    let (_, body) = json(refresh(&app, &id).await).await;
    assert_eq!(body["data"]["refresh"]["status"], "succeeded", "{body}");
    assert_eq!(body["data"]["refresh_fail_count"], 0);
    assert_eq!(body["data"]["last_error"], Value::Null);
}

/// A URL source without a format is CSV, and its answer is read as CSV.
#[tokio::test]
async fn a_csv_url_source_reads_the_answer_as_csv() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let csv = create_source(&app, json!({"name": "CSV feed", "connector": "url", "properties": {"endpoint_url": format!("{}/csv", server.base)}})).await;
    let (_, body) = json(refresh(&app, csv["id"].as_str().unwrap()).await).await;
    assert_eq!(body["data"]["refresh"]["status"], "succeeded", "{body}");
    assert_eq!(body["data"]["row_count"], 3);
    assert_eq!(
        body["data"]["columns"][1],
        json!({"name": "sales", "type": "number"})
    );
}

#[tokio::test]
async fn configured_headers_are_sent_to_the_endpoint() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let sid = secret_feed(&app, &server).await;
    let (_, body) = json(refresh(&app, &sid).await).await;
    assert_eq!(body["data"]["refresh"]["status"], "succeeded", "{body}");
    assert_eq!(body["data"]["row_count"], 1);
}

#[tokio::test]
async fn a_header_token_is_never_shown() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let sid = secret_feed(&app, &server).await;
    let (_, body) = json(refresh(&app, &sid).await).await;
    assert_eq!(body["data"]["properties"]["headers"]["X-Token"], "********");
    let (_, shown) = json(app.get(&format!("/datasources/{sid}/properties")).await).await;
    assert_eq!(
        shown["data"]["properties"]["headers"]["X-Token"],
        "********"
    );
}

/// The mask sent back, through the properties PUT or the source PUT, keeps the token.
#[tokio::test]
async fn sending_the_masked_header_back_keeps_the_token() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let sid = secret_feed(&app, &server).await;
    let (_, shown) = json(app.get(&format!("/datasources/{sid}/properties")).await).await;
    let response = put(
        &app,
        &format!("/datasources/{sid}/properties"),
        json!({"properties": {"headers": {"X-Token": "********"}}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = put(
        &app,
        &format!("/datasources/{sid}"),
        json!({"properties": shown["data"]["properties"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (_, again) = json(refresh(&app, &sid).await).await;
    assert_eq!(again["data"]["refresh"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn an_endpoint_urls_query_values_are_masked_and_kept_when_sent_back() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let url = format!("{}/query-secret?token=s3cret&page=1", server.base);
    let ds = create_source(&app, json!({"name": "Query secret", "connector": "url", "format": "json", "properties": {"endpoint_url": url}})).await;
    let sid = ds["id"].as_str().unwrap().to_owned();
    let masked = format!("{}/query-secret?token=********&page=********", server.base);
    assert_eq!(ds["properties"]["endpoint_url"], masked.as_str(), "{ds}");
    // Not in any answer: the source, its properties, the list.
    for path in [
        format!("/datasources/{sid}"),
        format!("/datasources/{sid}/properties"),
        "/datasources".to_owned(),
    ] {
        let (_, body) = json(app.get(&path).await).await;
        assert!(!body.to_string().contains("s3cret"), "{path}: {body}");
    }
    // Sending the shown URL back keeps the stored one: the refresh still authenticates.
    let response = put(
        &app,
        &format!("/datasources/{sid}"),
        json!({"properties": {"endpoint_url": masked}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (_, again) = json(refresh(&app, &sid).await).await;
    assert_eq!(again["data"]["refresh"]["status"], "succeeded", "{again}");
    assert_eq!(again["data"]["row_count"], 1);
}

#[tokio::test]
async fn the_connector_refuses_private_addresses_before_connecting_and_on_redirects() {
    let server = endpoint().await;
    // Nothing allowed: loopback is refused, by IP and by name, without a request.
    let app = TestApp::spawn().await;
    for url in [
        format!("{}/json", server.base),
        server.base.replace("127.0.0.1", "localhost") + "/json",
    ] {
        let ds = create_source(&app, json!({"name": "Local", "connector": "url", "format": "json", "properties": {"endpoint_url": url, "json_path": "$.data.rows"}})).await;
        let (status, body) = json(
            app.call(
                "POST",
                &format!("/datasources/{}/refresh", ds["id"].as_str().unwrap()),
                app.key(),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["refresh"]["status"], "failed");
        let error = body["data"]["last_error"].as_str().unwrap();
        assert!(
            error.contains("loopback") && error.contains("DATASOURCE_ALLOWED_NETWORKS"),
            "{error}"
        );
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "the local server saw no request"
    );

    // Loopback allowed: a redirect to the metadata service is still refused.
    let app = TestApp::spawn_with(local()).await;
    let ds = create_source(&app, json!({"name": "Redirect", "connector": "url", "format": "json", "properties": {"endpoint_url": format!("{}/to-metadata", server.base)}})).await;
    let (_, body) = json(
        app.call(
            "POST",
            &format!("/datasources/{}/refresh", ds["id"].as_str().unwrap()),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(body["data"]["refresh"]["status"], "failed", "{body}");
    let error = body["data"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("169.254.169.254") && error.contains("link-local"),
        "{error}"
    );
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "only the redirecting request was made"
    );
}

/// Waits (up to 30 s) until the data source's background refresh is done; answers it.
async fn refreshed(app: &TestApp, id: &str) -> Value {
    for _ in 0..150 {
        let (_, got) = json(app.get(&format!("/datasources/{id}")).await).await;
        let status = got["data"]["refresh"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if status == "succeeded" || status == "failed" {
            return got["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the refresh of {id} did not finish within 30 seconds");
}

#[tokio::test]
async fn bulk_refresh_queues_each_source_for_the_worker_and_unknown_ones_are_not_fatal() {
    let app = TestApp::spawn_with(local()).await;
    let other = TestApp::spawn().await;
    let server = endpoint().await;
    let url = create_source(&app, json!({"name": "Feed", "connector": "url", "format": "json", "properties": {"endpoint_url": format!("{}/json", server.base), "json_path": "$.data.rows"}})).await;
    let push = create_source(&app, json!({"name": "Pushed", "slug": "pushed"})).await;
    push_csv(&app, push["id"].as_str().unwrap(), SALES_CSV).await;
    let broken = create_source(&app, json!({"name": "Broken", "connector": "url", "properties": {"endpoint_url": format!("{}/fail", server.base)}})).await;
    let foreign = create_source(&other, json!({"name": "Theirs"})).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    let url_id = url["id"].as_str().unwrap();
    let push_id = push["id"].as_str().unwrap();
    let broken_id = broken["id"].as_str().unwrap();
    let foreign_id = foreign["id"].as_str().unwrap();

    let response = app
        .post(
            "/data-sources/@/refresh",
            json!({"datasources": [url_id, "pushed", unknown, foreign_id, broken_id]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()[header::LOCATION], "/api/1.0/datasources");
    let (_, body) = json(response).await;
    let data = &body["data"];
    assert_eq!(data["total_datasources_requested"], 5);
    assert_eq!(data["total_queued"], 3);
    let statuses: Vec<(&str, &str)> = data["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (url_id, "queued"),
            (push_id, "queued"),
            (unknown, "not_found"),
            (foreign_id, "not_found"),
            (broken_id, "queued")
        ]
    );
    let failed = data["failed_results"].as_object().unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed[unknown].as_str().unwrap().contains("not found"));
    assert!(failed[foreign_id].as_str().unwrap().contains("not found"));
    // The worker does them, each data source showing how it went.
    let got = refreshed(&app, url_id).await;
    assert_eq!(got["refresh"]["status"], "succeeded", "{got}");
    assert_eq!(got["refresh"]["trigger"], "api");
    assert_eq!(got["row_count"], 2);
    assert_eq!(
        refreshed(&app, push_id).await["refresh"]["status"],
        "succeeded"
    );
    let got = refreshed(&app, broken_id).await;
    assert_eq!(got["refresh"]["status"], "failed", "{got}");
    assert!(
        got["refresh"]["error"].as_str().unwrap().contains("500"),
        "{got}"
    );
    assert_eq!(got["refresh_fail_count"], 1);
    // The other company's source was not touched.
    let (_, theirs) = json(other.get(&format!("/datasources/{foreign_id}")).await).await;
    assert_eq!(theirs["data"]["version"], 1);
    assert!(theirs["data"]["refresh"].is_null());
}

#[tokio::test]
async fn a_url_source_refreshes_by_itself_on_its_interval() {
    let app = TestApp::spawn_with(local()).await;
    let server = endpoint().await;
    let url = create_source(&app, json!({"name": "Hourly feed", "connector": "url", "format": "json", "refresh_interval": 3600,
        "properties": {"endpoint_url": format!("{}/json", server.base), "json_path": "$.data.rows"}})).await;
    let id = url["id"].as_str().unwrap();
    let first = url["next_refresh_at"].as_str().unwrap().to_owned();
    let push = create_source(&app, json!({"name": "Pushed", "refresh_interval": 3600})).await;
    assert!(
        push["next_refresh_at"].is_null(),
        "only URL sources refresh by themselves"
    );
    // An hour later the scheduler's tick comes.
    app.advance(chrono::Duration::seconds(3601));
    let tick: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT).unwrap();
    pulseboard_report_worker::handle(&app.state, tick)
        .await
        .unwrap();
    let got = refreshed(&app, id).await;
    assert_eq!(got["refresh"]["status"], "succeeded", "{got}");
    assert_eq!(got["refresh"]["trigger"], "schedule");
    assert_eq!(got["row_count"], 2);
    assert!(
        got["next_refresh_at"].as_str().unwrap() > first.as_str(),
        "{got}"
    );
}

#[tokio::test]
async fn bulk_refresh_names_between_one_and_the_maximum() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post("/datasources/@/refresh", json!({"datasources": []}))
            .await,
        400,
        "validation_failed",
    )
    .await;
    expect_error(
        app.post("/datasources/@/refresh", json!({})).await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn concurrent_appends_lose_no_rows_and_old_copies_are_pruned() {
    let app = TestApp::spawn().await;
    let ds = create_source(&app, json!({"name": "Busy", "format": "csv"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    push_csv(&app, &id, "n,who\n0,seed\n").await;
    // Eight producers append at once; every row must arrive exactly once.
    let appends = (1..=8).map(|i| {
        let path = format!("/datasources/{id}/data");
        let app = &app;
        async move {
            send(
                app,
                "POST",
                &path,
                "text/csv",
                format!("n,who\n{i},producer\n"),
            )
            .await
        }
    });
    for response in futures::future::join_all(appends).await {
        let status = response.status();
        assert_eq!(status, 200, "{:?}", response.text().await);
    }
    let all = rows(&app, &id).await;
    let mut seen: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..=8).collect::<Vec<_>>());
    let (_, shown) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(shown["data"]["row_count"], 9);
    assert!(
        shown["data"].get("data_id").is_none(),
        "internal pointers stay internal"
    );
    // Only the current and the previous copy stay in the bucket.
    let prefix = format!("{}/datasources/{id}/", app.company.company_id);
    let listed = app.state.store.files().list(&prefix).await.unwrap();
    let copies: std::collections::BTreeSet<String> = listed
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&prefix)
                .and_then(|k| k.split('/').next())
                .filter(|first| *first != "segments")
                .map(str::to_owned)
        })
        .collect();
    assert!(copies.len() <= 2, "{copies:?}");
}

/// "Daily Sales" (slug `daily-sales`), a push CSV source with a description; answers it.
async fn daily_sales(app: &TestApp) -> Value {
    create_source(
        app,
        json!({"name": "Daily Sales", "description": "by region"}),
    )
    .await
}

/// Changes source `id`'s slug to `sales` and its refresh interval to an hour.
async fn rename_slug_to_sales(app: &TestApp, id: &str) -> reqwest::Response {
    put(
        app,
        &format!("/datasources/{id}"),
        json!({"slug": "sales", "refresh_interval": 3600}),
    )
    .await
}

/// "Feed", a JSON URL source with a json_path and a secret header; answers it.
async fn feed(app: &TestApp) -> Value {
    create_source(app, json!({"name": "Feed", "connector": "url", "format": "json", "properties": {"endpoint_url": "https://example.com/feed", "json_path": "$.items", "headers": {"X-Token": "t"}}})).await
}

/// Two push CSV sources, both "Daily Sales", and the URL source "Feed", which it answers.
async fn three_sources(app: &TestApp) -> Value {
    daily_sales(app).await;
    create_source(app, json!({"name": "Daily Sales"})).await;
    feed(app).await
}

fn source_path(ds: &Value) -> String {
    format!("/datasources/{}", ds["id"].as_str().unwrap())
}

fn data_path(id: &str) -> String {
    format!("/datasources/{id}/data")
}

/// A CSV whose third line has a field too many.
const RAGGED_CSV: &str = "a,b\n1,2\n3,4,5\n";

/// A valid CSV just over the 5 MiB push limit.
fn over_5_mib() -> String {
    let mut big = String::from("a,b\n");
    while big.len() <= 5 * 1024 * 1024 + 100 {
        big.push_str("1234567890,abcdefghijklmnopqrstuvwxyz\n");
    }
    big
}

/// A CSV source holding [`SALES_CSV`]; answers its id.
async fn sales_with_data(app: &TestApp) -> String {
    let ds = create_source(app, json!({"name": "Sales"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    push_csv(app, &id, SALES_CSV).await;
    id
}

/// A JSON source holding the one row `{"a": 1}`; answers its id.
async fn events_with_data(app: &TestApp) -> String {
    let ds = create_source(app, json!({"name": "Events", "format": "json"})).await;
    let id = ds["id"].as_str().unwrap().to_owned();
    let response = send(
        app,
        "PUT",
        &data_path(&id),
        "application/json",
        r#"[{"a":1}]"#,
    )
    .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    id
}

/// A source renamed once through a PUT with its first ETag (now version 2); answers its
/// path and that first, now stale, ETag.
async fn renamed_source(app: &TestApp) -> (String, String) {
    let path = source_path(&create_source(app, json!({"name": "Sales"})).await);
    let etag = current_etag(app, &path).await;
    let response = put_if_match(app, &path, &etag, json!({"name": "Renamed"})).await;
    assert_eq!(response.status(), 200);
    (path, etag)
}

/// A CSV push to the source at `path` with `If-Match: tag`.
async fn stale_push(app: &TestApp, path: &str, tag: &str) -> reqwest::Response {
    app.http
        .put(app.url(&format!("{path}/data")))
        .header("kf-api-key", app.key())
        .header(header::IF_MATCH, tag)
        .header(header::CONTENT_TYPE, "text/csv")
        .body(SALES_CSV)
        .send()
        .await
        .unwrap()
}

/// A push source, disabled; answers its path.
async fn disabled_source(app: &TestApp) -> String {
    let path = source_path(&create_source(app, json!({"name": "Sales"})).await);
    let (status, disabled) = json(operation(app, &format!("{path}/@/disable")).await).await;
    assert_eq!(status, 200, "{disabled}");
    path
}

async fn refresh(app: &TestApp, id: &str) -> reqwest::Response {
    operation(app, &format!("/datasources/{id}/refresh")).await
}

/// The rows at `$.data.rows` of the endpoint's `/json`.
fn feed_rows() -> Value {
    json!([{"day": "2026-11-01", "sales": 10}, {"day": "2026-11-02", "sales": 12.5}])
}

/// A JSON URL source on the endpoint's `/to-json` (a redirect to `/json`), picking
/// `$.data.rows`; answers its id.
async fn redirecting_feed(app: &TestApp, server: &Endpoint) -> String {
    let ds = create_source(app, json!({"name": "Feed", "connector": "url", "format": "json", "properties": {"endpoint_url": format!("{}/to-json", server.base), "json_path": "$.data.rows"}})).await;
    ds["id"].as_str().unwrap().to_owned()
}

/// A JSON URL source on the endpoint's `/json` whose json_path `$.data.cols` is not in the
/// answer; answers its id.
async fn missing_json_path_feed(app: &TestApp, server: &Endpoint) -> String {
    let ds = create_source(app, json!({"name": "Feed", "connector": "url", "format": "json", "properties": {"endpoint_url": format!("{}/json", server.base), "json_path": "$.data.cols"}})).await;
    ds["id"].as_str().unwrap().to_owned()
}

/// A JSON URL source on the endpoint's `/secret`, which answers only with the `X-Token`
/// header the source is configured with; answers its id.
async fn secret_feed(app: &TestApp, server: &Endpoint) -> String {
    let secret = create_source(app, json!({"name": "Secret", "connector": "url", "format": "json", "properties": {"endpoint_url": format!("{}/secret", server.base), "headers": {"X-Token": "s3cret"}}})).await;
    secret["id"].as_str().unwrap().to_owned()
}
