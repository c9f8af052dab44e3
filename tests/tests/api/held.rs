//! Writes held until admission (`platform::held`): an asset write runs its handler while the
//! credential is verified and the request counted, with the caller this instance verified
//! last time, and its database writes wait for admission's decision. Whatever admission
//! refuses, or admits as another caller, must change nothing the handler was about to
//! write; a request admitted as another caller is answered by running the handler again, so
//! its write happens exactly once.

use domain::asset::Asset;
use domain::records::Dashboard;
use platform::store::keys;
use pulseboard_tests::{expect_error, json, Options, TestApp};
use serde_json::{json, Value};

async fn dashboard(app: &TestApp) -> String {
    let (status, body) = json(app.post("/dashboards", json!({"name": "Held"})).await).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Renames the dashboard with `key`.
async fn rename_response(app: &TestApp, key: &str, id: &str, name: &str) -> reqwest::Response {
    let path = format!("/dashboards/{id}");
    app.call("PUT", &path, key, Some(json!({"name": name})))
        .await
}

/// Renames the dashboard with `key`, answering the status (and the body).
async fn rename(app: &TestApp, key: &str, id: &str, name: &str) -> (u16, Value) {
    json(rename_response(app, key, id, name).await).await
}

/// The dashboard's name and version as stored (read past the API, so it counts nothing).
async fn stored_name(app: &TestApp, id: &str) -> (String, u64) {
    let dashboard: Dashboard = app
        .state
        .store
        .get(keys::asset(Dashboard::KIND, &app.company.company_id, id))
        .await
        .unwrap()
        .unwrap();
    (dashboard.meta.name, dashboard.meta.version)
}

/// A new CSV data source, without data; answers its id.
async fn csv_source(app: &TestApp) -> String {
    let body = json!({"name": "Pushed", "format": "csv"});
    let (status, body) = json(app.post("/datasources", body).await).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Replaces (`PUT`) or appends to (`POST`) the data of source `id` with CSV `csv`, with `key`.
async fn rows(
    app: &TestApp,
    method: &str,
    key: &str,
    id: &str,
    csv: &'static str,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    app.http
        .request(method, app.url(&format!("/datasources/{id}/data")))
        .header("kf-api-key", key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap()
}

/// Two writes with `key`, so this instance remembers its caller and the next write runs
/// held, alongside admission.
async fn remembered(app: &TestApp, key: &str, id: &str) {
    for name in ["first", "second"] {
        let (status, body) = rename(app, key, id, name).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_held_write_with_a_key_revoked_since_is_a_401_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = dashboard(&app).await;
    let key = app.create_key(json!({"name": "to revoke"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    remembered(&app, &secret, &id).await;
    let before = stored_name(&app, &id).await;
    let path = format!("/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.call("DELETE", &path, app.key(), None).await.status(),
        200
    );
    let r = rename_response(&app, &secret, &id, "revoked").await;
    expect_error(r, 401, "unauthorized").await;
    assert_eq!(stored_name(&app, &id).await, before);
}

#[tokio::test]
async fn a_held_write_over_the_per_second_limit_is_a_429_and_changes_nothing() {
    let app = TestApp::spawn_with(Options {
        per_second_limit: Some(3),
        ..Options::default()
    })
    .await;
    let id = dashboard(&app).await;
    let key = app.key().to_owned();
    // A clock that stands still: every request below falls in one rate-limit second.
    app.freeze(chrono::Utc::now());
    app.advance(chrono::Duration::seconds(1));
    remembered(&app, &key, &id).await;
    let (status, body) = rename(&app, &key, &id, "third").await;
    assert_eq!(status, 200, "{body}");
    let before = stored_name(&app, &id).await;
    app.advance(chrono::Duration::seconds(1));
    for name in ["a", "b", "c"] {
        let (status, body) = rename(&app, &key, &id, name).await;
        assert_eq!(status, 200, "{body}");
    }
    let r = rename_response(&app, &key, &id, "over").await;
    expect_error(r, 429, "rate_limited").await;
    assert_eq!(stored_name(&app, &id).await, ("c".to_owned(), before.1 + 3));
}

#[tokio::test]
async fn a_held_write_by_a_caller_whose_role_lost_the_permission_is_a_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = dashboard(&app).await;
    let (status, role) = json(
        app.post(
            "/roles",
            json!({"name": "Dashboard editor", "permissions": ["dashboard.edit"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let role_id = role["data"]["id"].as_str().unwrap().to_owned();
    let (_, key) = app.user_with_key(&[role_id.as_str()], None).await;
    remembered(&app, &key, &id).await;
    let before = stored_name(&app, &id).await;
    let path = format!("/roles/{role_id}");
    let r = app
        .call(
            "PUT",
            &path,
            app.key(),
            Some(json!({"permissions": ["report.generate"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = rename_response(&app, &key, &id, "forbidden").await;
    expect_error(r, 403, "forbidden").await;
    assert_eq!(stored_name(&app, &id).await, before);
}

#[tokio::test]
async fn a_held_write_admitted_as_a_caller_changed_since_happens_once_as_that_caller() {
    let app = TestApp::spawn().await;
    let id = dashboard(&app).await;
    let (user, key) = app.user_with_key(&["admin"], None).await;
    remembered(&app, &key, &id).await;
    // The caller changes (still an admin): the remembered one no longer matches.
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let r = app
        .call(
            "PUT",
            &path,
            app.key(),
            Some(json!({"first_name": "Renamed"})),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Creating a link is not idempotent: running twice would make two.
    let links = format!("/dashboards/{id}/published-links");
    let (status, body) = json(app.call("POST", &links, &key, Some(json!({}))).await).await;
    assert_eq!(status, 201, "{body}");
    let (status, list) = json(app.get(&links).await).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["meta"]["total"], 1, "{list}");
    // And the very next one, now remembered as this caller, makes one more.
    let (status, _) = json(app.call("POST", &links, &key, Some(json!({}))).await).await;
    assert_eq!(status, 201);
    let (_, list) = json(app.get(&links).await).await;
    assert_eq!(list["meta"]["total"], 2, "{list}");
}

#[tokio::test]
async fn a_held_append_with_a_key_revoked_since_adds_no_rows_and_leaves_no_segment() {
    let app = TestApp::spawn().await;
    let id = csv_source(&app).await;
    let key = app.create_key(json!({"name": "to revoke"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let seeded = rows(&app, "PUT", app.key(), &id, "n,who\n0,seed\n").await;
    assert_eq!(seeded.status(), 200);
    for more in ["n,who\n1,a\n", "n,who\n2,b\n"] {
        assert_eq!(rows(&app, "POST", &secret, &id, more).await.status(), 200);
    }
    let files = app.state.store.files();
    let under = format!("{}/datasources/{id}/segments/", app.company.company_id);
    let before = files.list(&under).await.unwrap();
    let path = format!("/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.call("DELETE", &path, app.key(), None).await.status(),
        200
    );
    let refused = rows(&app, "POST", &secret, &id, "n,who\n3,c\n").await;
    expect_error(refused, 401, "unauthorized").await;
    assert_eq!(files.list(&under).await.unwrap(), before);
    let (status, body) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["row_count"], 3);
}

/// Sends `POST path` with a chunked body of `size` bytes over a raw connection (no length
/// announced); answers the status.
async fn chunked_post(app: &TestApp, path: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(&app.url(path)).unwrap();
    let address = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\nkf-api-key: {}\r\ncontent-type: text/csv\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        url.path(),
        app.key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "n,who\n".to_owned() + &"1,abcdefgh\n".repeat(6_000);
    let mut sent = 0;
    while sent < size {
        let piece = &chunk.as_bytes()[..chunk.len().min(size - sent)];
        let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server answered and closed early
        }
        sent += piece.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer}"))
}

#[tokio::test]
async fn an_oversize_chunked_body_to_a_held_route_is_a_413_as_without_the_hold() {
    let app = TestApp::spawn().await;
    let id = csv_source(&app).await;
    let path = format!("/datasources/{id}/data");
    // Two appends: this instance now remembers the caller and holds the next one.
    for more in ["n,who\n0,seed\n", "n,who\n1,a\n"] {
        assert_eq!(rows(&app, "POST", app.key(), &id, more).await.status(), 200);
    }
    assert_eq!(chunked_post(&app, &path, 7 << 20).await, 413);
    assert_eq!(chunked_post(&app, &path, (5 << 20) + 1000).await, 413);
    let (_, body) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(body["data"]["row_count"], 2, "{body}");
}

/// Report writes are held too: a generate with a key revoked since queues no run.
#[tokio::test]
async fn a_held_generate_with_a_key_revoked_since_is_a_401_and_queues_no_run() {
    let app = TestApp::spawn().await;
    let dashboard_id = dashboard(&app).await;
    let (status, report) = json(
        app.post(
            "/reports",
            json!({"name": "Held", "dashboard_id": dashboard_id, "format": "json"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{report}");
    let generate = format!(
        "/reports/{}/generate",
        report["data"]["id"].as_str().unwrap()
    );
    let runs = format!("/reports/{}/runs", report["data"]["id"].as_str().unwrap());
    let key = app.create_key(json!({"name": "to revoke"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    // Two runs, so this instance remembers the key's caller and the next one runs held.
    for _ in 0..2 {
        let r = app.call("POST", &generate, &secret, None).await;
        assert_eq!(r.status(), 202);
    }
    let path = format!("/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.call("DELETE", &path, app.key(), None).await.status(),
        200
    );
    expect_error(
        app.call("POST", &generate, &secret, None).await,
        401,
        "unauthorized",
    )
    .await;
    let (status, listed) = json(app.get(&runs).await).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["data"]["runs"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
}

/// A local endpoint serving CSV for a URL data source, counting the requests it gets.
async fn counting_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/csv",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { ([("content-type", "text/csv")], "day,sales\n2026-11-01,3\n") }
        }),
    );
    let base = pulseboard_tests::serve(router).await;
    (format!("{base}/csv"), hits)
}

/// `POST /dashboards/{id}/refresh` is held, and it fetches its URL data sources: a fetch is
/// outbound traffic, which waits for admission like a write, so a refresh refused (a key
/// revoked since this instance last verified it) never reaches the endpoint.
#[tokio::test]
async fn a_held_refresh_with_a_key_revoked_since_is_a_401_and_reaches_no_endpoint() {
    use std::sync::atomic::Ordering;
    let app = TestApp::spawn_with(Options {
        allowed_networks: vec![("127.0.0.1".parse().unwrap(), 32)],
        ..Options::default()
    })
    .await;
    let (url, hits) = counting_endpoint().await;
    let source = json!({"name": "Fetched", "connector": "url", "format": "csv",
                        "properties": {"endpoint_url": url}});
    let (status, ds) = json(app.post("/datasources", source).await).await;
    assert_eq!(status, 201, "{ds}");
    let klip = json!({"name": "Sales", "type": "number", "datasource_id": ds["data"]["id"],
                      "query": {"value": "sales", "aggregate": "sum"}});
    let (status, klip) = json(app.post("/klips", klip).await).await;
    assert_eq!(status, 201, "{klip}");
    let id = dashboard(&app).await;
    let instances =
        json!({"klips": [{"klip_id": klip["data"]["id"], "region": "main", "position": 0}]});
    let path = format!("/dashboards/{id}/klip-instances");
    assert_eq!(
        app.call("PUT", &path, app.key(), Some(instances))
            .await
            .status(),
        200
    );

    let key = app.create_key(json!({"name": "to revoke"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let refresh = format!("/dashboards/{id}/refresh");
    for _ in 0..2 {
        let (status, body) = json(app.call("POST", &refresh, &secret, None).await).await;
        assert_eq!(status, 200, "{body}");
    }
    let before = hits.load(Ordering::SeqCst);
    assert!(before >= 2, "the refreshes fetched: {before}");
    let revoke = format!("/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.call("DELETE", &revoke, app.key(), None).await.status(),
        200
    );
    expect_error(
        app.call("POST", &refresh, &secret, None).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "a refused refresh fetched"
    );
}
