//! API keys: create (shown once, hashed at rest), show, list, `users/{id}/api-key`, and
//! other tenants' ids.

use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::json;

#[tokio::test]
async fn a_created_key_is_shown_once_and_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api-keys",
            json!({"name": "ci", "description": "for CI", "expires_in_days": 365}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = json(response).await;
    let key = &body["data"];
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("pb_live_") && secret.len() >= 40);
    assert_eq!(
        location,
        format!("/api/1.0/api-keys/{}", key["id"].as_str().unwrap())
    );
    assert_eq!(body["meta"]["location"], location.as_str());
    assert_eq!(body["meta"]["status"], 201);
    assert_eq!(key["status"], "active");
    assert_eq!(key["expires_in_days"], 365);

    let (status, shown) = json(
        app.get(&format!("/api-keys/{}", key["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(shown["data"].get("key").is_none());
    assert_eq!(shown["data"]["prefix"], &secret[..12]);

    // Nothing in the table holds the secret itself.
    let items = app.state.store.scan_all().await.unwrap();
    let dump = format!("{items:?}");
    assert!(!dump.contains(secret));
}

#[tokio::test]
async fn users_api_key_creates_a_key_for_self_or_a_404_for_strangers() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url(&format!("/users/{}/api-key", app.company.user_id)))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["user_id"], app.company.user_id.as_str());
    let secret = body["data"]["key"].as_str().unwrap();
    assert_eq!(
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let response = app
        .post(
            "/users/self/api-key",
            json!({"name": "mine", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);

    let other = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url(&format!("/users/{}/api-key", other.company.user_id)))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn other_companies_keys_are_404_never_a_leak() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let foreign = other.create_key(json!({"name": "theirs"})).await;
    let id = foreign["id"].as_str().unwrap();
    expect_error(app.get(&format!("/api-keys/{id}")).await, 404, "not_found").await;
    let r = app
        .http
        .delete(app.url(&format!("/api-keys/{id}")))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    expect_error(
        app.post(&format!("/api-keys/{id}/rotate"), json!({})).await,
        404,
        "not_found",
    )
    .await;
    expect_error(app.get("/api-keys/not-an-id").await, 404, "not_found").await;
    // Their key still works.
    let secret = foreign["key"].as_str().unwrap();
    assert_eq!(
        other
            .http
            .get(other.url("/profile"))
            .header("kf-api-key", secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // And listing another company's user is a 404 too.
    expect_error(
        app.get(&format!("/api-keys?user_id={}", other.company.user_id))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_key_for_another_user_cannot_carry_scopes_that_user_lacks() {
    let app = TestApp::spawn().await;
    let (viewer, _) = app.user_with_key(&["viewer"], None).await;
    let path = format!("/users/{}/api-key", viewer["id"].as_str().unwrap());
    let body = expect_error(
        app.post(
            &path,
            json!({"name": "too strong", "scopes": ["user.manage"]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("user.manage"),
        "{body}"
    );
    assert_eq!(
        app.post(
            &path,
            json!({"name": "fine", "scopes": ["report.download"]})
        )
        .await
        .status(),
        201
    );
}

/// A key's `usage_count` as `GET /api-keys/{id}` shows it.
async fn uses_shown(app: &TestApp, id: &str) -> i64 {
    let (status, body) = json(app.get(&format!("/api-keys/{id}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["usage_count"].as_i64().unwrap()
}

/// `n` requests with `secret`, each answered 200.
async fn use_key(app: &TestApp, secret: &str, path: &str, n: usize) {
    for _ in 0..n {
        let r = app.call("GET", path, secret, None).await;
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn uses_in_a_client_account_count_with_the_keys_own_uses() {
    let app = TestApp::spawn().await;
    let (status, client) = json(app.post("/clients", json!({"name": "Acme"})).await).await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap();
    let key = app.create_key(json!({"name": "partner"})).await;
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    use_key(&app, secret, "/profile", 2).await;
    use_key(&app, secret, &format!("/users?client_id={cid}"), 3).await;
    assert_eq!(uses_shown(&app, id).await, 5);
    // The list shows the same.
    let (_, list) = json(app.get("/api-keys").await).await;
    let listed = list["data"]["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(listed["usage_count"], 5, "{list}");
    assert!(listed["last_used_at"].as_str().is_some(), "{list}");
}

#[tokio::test]
async fn a_revoked_keys_refused_request_is_not_a_use() {
    let app = TestApp::spawn().await;
    let key = app.create_key(json!({"name": "short-lived"})).await;
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    // Twice, so this instance remembers the key and counts the next request while it
    // verifies it (the count is then given back).
    use_key(&app, secret, "/profile", 2).await;
    let r = app
        .call("DELETE", &format!("/api-keys/{id}"), app.key(), None)
        .await;
    assert_eq!(r.status(), 200);
    expect_error(
        app.call("GET", "/profile", secret, None).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(uses_shown(&app, id).await, 2);
}

#[tokio::test]
async fn a_days_uses_move_to_the_key_when_its_counter_item_expires() {
    use chrono_tz::America::New_York;
    let app = TestApp::spawn().await;
    let key = app.create_key(json!({"name": "daily"})).await;
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    use_key(&app, secret, "/profile", 3).await;
    let day = app.state.clock.now().with_timezone(&New_York).date_naive();
    let company = app.company.company_id.clone();
    let counter = platform::store::keys::rate_day(&company, &day.to_string());
    let item = app.state.store.raw_item(&counter).await.unwrap().unwrap();
    let held = platform::store::counters::key_uses_of(&item)[id];
    assert_eq!(held.count, 3);
    // DynamoDB removes the item when its time to live passes; the stream hands the removal
    // to the worker, which moves the uses to the key's own item.
    app.state.store.delete(&counter).await.unwrap();
    let record_key = platform::store::keys::api_key(&company, id);
    let mut stored = None;
    for _ in 0..100 {
        let item = app
            .state
            .store
            .raw_item(&record_key)
            .await
            .unwrap()
            .unwrap();
        if platform::store::number(&item, "usage_count") == Some(3) {
            stored = Some(item);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stored = stored.expect("the worker folded the day's uses into the key");
    assert_eq!(
        platform::store::string(&stored, "last_used_at"),
        platform::time::rfc3339(held.last.unwrap())
    );
    assert_eq!(uses_shown(&app, id).await, 3);
    // The same removal delivered again changes nothing.
    app.state
        .store
        .api_keys()
        .fold_day(&company, id, day, 3, held.last)
        .await
        .unwrap();
    assert_eq!(uses_shown(&app, id).await, 3);
    // Uses after it count on top.
    use_key(&app, secret, "/profile", 1).await;
    assert_eq!(uses_shown(&app, id).await, 4);
}

/// A company's day counter item holds the uses of at most 8 keys: with more it would cost
/// two write units on every request of the company for the rest of the day. The uses of the
/// keys past those go to the keys' own items, and every key's `usage_count` is still right.
#[tokio::test]
async fn a_day_counter_item_keeps_8_keys_and_the_uses_of_more_still_count() {
    let app = TestApp::spawn().await;
    let mut keys = Vec::new();
    for i in 0..12 {
        let key = app.create_key(json!({"name": format!("key {i}")})).await;
        keys.push((
            key["id"].as_str().unwrap().to_owned(),
            key["key"].as_str().unwrap().to_owned(),
        ));
    }
    for (i, (_, secret)) in keys.iter().enumerate() {
        for _ in 0..=i % 3 {
            let r = app.call("GET", "/profile", secret, None).await;
            assert_eq!(r.status(), 200);
        }
    }
    let date = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive()
        .to_string();
    let counter = platform::store::keys::rate_day(&app.company.company_id, &date);
    let item = app.state.store.raw_item(&counter).await.unwrap().unwrap();
    let held = item.keys().filter(|name| name.starts_with("u#")).count();
    // The bootstrap key (used by create_key) and 7 of the new ones.
    assert_eq!(
        held,
        platform::store::counters::KEYS_PER_DAY_ITEM,
        "{item:?}"
    );
    assert!(platform::store::item_size(&item) < 1024, "{item:?}");
    for (i, (id, _)) in keys.iter().enumerate() {
        let (status, shown) = json(app.get(&format!("/api-keys/{id}")).await).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(
            shown["data"]["usage_count"],
            (i % 3 + 1) as u64,
            "key {i}: {shown}"
        );
    }
}
